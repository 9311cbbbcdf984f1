"""CoLLM's settings: what each ``collm_*`` key must be. Defaults live in
``properties/model/CoLLM.yaml`` only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``;
``CoLLM-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, lightgcn_stage

#: Stage "graph": RecBole's LightGCN on a general view of the training split (cached).
GRAPH_STAGE = lightgcn_stage("collm_graph_")

COLLM_SETTINGS = Settings("CoLLM", prefix="collm_", keys={
    "collm_output": Choice("item_head", "yes_no"),
    # stage "graph": RecBole's LightGCN on the training split (cached)
    **GRAPH_STAGE.keys,
    # CIE: the mapping of LightGCN embeddings to LLM tokens
    "collm_proj_mid_times": Int(min=1),
    "collm_proj_dropout": Float(min=0, max=1),
    "collm_history_ids": Bool(),
    # prompts
    "collm_max_history": Int(min=1),
    "collm_title_max_tokens": Int(min=0),
    "collm_prompt_next": Str(non_empty=True),
    "collm_text_prompt_next": Str(non_empty=True),
    "collm_prompt_yes_no": Str(non_empty=True),
    "collm_text_prompt_yes_no": Str(non_empty=True),
    "collm_negatives": Int(min=1),
    # LoRA (peft)
    "collm_lora_r": Int(min=1),
    "collm_lora_alpha": Float(gt=0),
    "collm_lora_dropout": Float(min=0, max=1),
    "collm_lora_targets": Str(non_empty=True),
    # stages "lora" (text prompts) and "cie" (hybrid prompts, LoRA frozen)
    "collm_lora_epochs": Int(min=0),
    "collm_lora_learning_rate": Float(gt=0),
    "collm_cie_epochs": Int(min=0),
    "collm_cie_learning_rate": Float(gt=0),
    "collm_min_learning_rate": Float(min=0),
    "collm_warmup_epochs": Float(min=0),
    "collm_weight_decay": Float(min=0),
    "collm_batch_size": Int(min=1),
    "collm_samples_per_epoch": Int(min=0),
    "collm_eval_batch_size": Int(min=1),
})

"""CoLLM's settings: what each ``collm_*`` key must be. Defaults live in
``properties/model/CoLLM.yaml`` only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``;
``CoLLM-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import (Bool, Choice, Float, Int, Settings, Str,
                                  lightgcn_stage, lora_keys, tuning_schedule_keys)

#: Stage "graph": RecBole's LightGCN on a general view of the training split (cached).
GRAPH_STAGE = lightgcn_stage("collm_graph_")

COLLM_SETTINGS = Settings("CoLLM", prefix="collm_", keys={
    "collm_output": Choice("item_head", "yes_no", doc=(
        "output form: item_head (full ranking over all items) | yes_no (the authors' yes/no scoring of one "
        "candidate)")),
    # stage "graph": RecBole's LightGCN on the training split (cached)
    **GRAPH_STAGE.keys,
    # CIE: the mapping of LightGCN embeddings to LLM tokens
    "collm_proj_mid_times": Int(min=1, doc="CIE mapping's hidden size, as a multiple of the graph embedding size"),
    "collm_proj_dropout": Float(min=0, max=1, doc="dropout in the CIE mapping"),
    "collm_history_ids": Bool(doc="an ID token after each history title (True: the <ItemIDList> variant)"),
    # prompts
    "collm_max_history": Int(min=1, doc="history titles in the prompt (newest kept)"),
    "collm_title_max_tokens": Int(min=0, doc="token budget of each item title in the prompt (0 = no cut)"),
    "collm_prompt_next": Str(non_empty=True, doc="hybrid prompt for next-item scoring (item_head)"),
    "collm_text_prompt_next": Str(non_empty=True, doc="text-only prompt for next-item scoring (stage lora)"),
    "collm_prompt_yes_no": Str(non_empty=True, doc="hybrid prompt for yes/no scoring"),
    "collm_text_prompt_yes_no": Str(non_empty=True, doc="text-only prompt for yes/no scoring (stage lora)"),
    "collm_negatives": Int(min=1, doc="yes_no: sampled negatives per positive"),
    # LoRA (peft)
    **lora_keys("collm_"),
    # stages "lora" (text prompts) and "cie" (hybrid prompts, LoRA frozen)
    "collm_lora_epochs": Int(min=0, doc="stage lora epochs (text-only prompts; LoRA and item head train)"),
    "collm_lora_learning_rate": Float(gt=0, doc="stage lora peak learning rate"),
    "collm_cie_epochs": Int(min=0, doc=(
        "stage cie epochs (hybrid prompts; CIE mapping and item head train, LoRA frozen)")),
    "collm_cie_learning_rate": Float(gt=0, doc="stage cie peak learning rate"),
    "collm_weight_decay": Float(min=0, doc="weight decay of both tuning stages"),
    "collm_batch_size": Int(min=1, doc="tuning samples per step"),
    **tuning_schedule_keys("collm_", "training samples"),
    "collm_eval_batch_size": Int(min=1, doc="users per scoring forward"),
})

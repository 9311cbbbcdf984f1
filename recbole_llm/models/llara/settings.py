"""LLaRA's settings: what each ``llara_*`` key must be. Defaults live in
``properties/model/LLaRA.yaml`` only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``;
``LLaRA-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, sasrec_stage

#: Stage "sasrec": RecBole's SASRec on the training sequences (cached).
SASREC_STAGE = sasrec_stage("llara_sasrec_")

LLARA_SETTINGS = Settings("LLaRA", prefix="llara_", keys={
    "llara_output": Choice("item_head", "candidates"),
    # stage "sasrec": RecBole's SASRec on the training sequences (cached)
    **SASREC_STAGE.keys,
    # hybrid item representation and curriculum
    "llara_proj_hidden": Int(min=0),
    "llara_curriculum": Bool(),
    # prompts
    "llara_max_history": Int(min=1),
    "llara_title_max_tokens": Int(min=0),
    "llara_prompt": Str(non_empty=True),
    "llara_item_separator": Str(),
    # LoRA (peft)
    "llara_lora_r": Int(min=1),
    "llara_lora_alpha": Float(gt=0),
    "llara_lora_dropout": Float(min=0, max=1),
    "llara_lora_targets": Str(non_empty=True),
    # fine-tuning
    "llara_epochs": Int(min=0),
    "llara_learning_rate": Float(gt=0),
    "llara_min_learning_rate": Float(min=0),
    "llara_warmup_epochs": Float(min=0),
    "llara_weight_decay": Float(min=0),
    "llara_batch_size": Int(min=1),
    "llara_samples_per_epoch": Int(min=0),
    "llara_eval_batch_size": Int(min=1),
})

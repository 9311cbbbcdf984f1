"""LLaRA's settings: what each ``llara_*`` key must be. Defaults live in
``properties/model/LLaRA.yaml`` only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``;
``LLaRA-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, lora_keys, sasrec_stage, tuning_schedule_keys

#: Stage "sasrec": RecBole's SASRec on the training sequences (cached).
SASREC_STAGE = sasrec_stage("llara_sasrec_")

LLARA_SETTINGS = Settings("LLaRA", prefix="llara_", keys={
    "llara_output": Choice("item_head", "candidates", doc=(
        "output form: item_head (full ranking over all items) | candidates (title likelihood over candidates)")),
    # stage "sasrec": RecBole's SASRec on the training sequences (cached)
    **SASREC_STAGE.keys,
    # hybrid item representation and curriculum
    "llara_proj_hidden": Int(min=0, doc="hidden size of the SASRec-to-LLM projector (0 = the LLM's hidden size)"),
    "llara_curriculum": Bool(doc=(
        "curriculum from text-only to hybrid prompts (probability step/total); False = always hybrid")),
    # prompts
    "llara_max_history": Int(min=1, doc="history items in the prompt (newest kept), also SASRec's sequence length"),
    "llara_title_max_tokens": Int(min=0, doc="token budget of each item title in the prompt (0 = no cut)"),
    "llara_prompt": Str(non_empty=True, doc="the prompt template"),
    "llara_item_separator": Str(doc="text between history items in the prompt"),
    # LoRA (peft)
    **lora_keys("llara_"),
    # fine-tuning
    "llara_epochs": Int(min=0, doc="fine-tuning epochs"),
    "llara_learning_rate": Float(gt=0, doc="fine-tuning peak learning rate"),
    "llara_weight_decay": Float(min=0, doc="fine-tuning weight decay"),
    "llara_batch_size": Int(min=1, doc="fine-tuning samples per step"),
    **tuning_schedule_keys("llara_", "training samples"),
    "llara_eval_batch_size": Int(min=1, doc="users per scoring forward"),
})

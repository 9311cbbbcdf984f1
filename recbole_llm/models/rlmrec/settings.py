"""RLMRec-Con's and RLMRec-Gen's settings: what each key must be. Defaults live in
``properties/model/RLMRec.yaml`` (shared: LightGCN, profiles) and ``RLMRecCon.yaml`` /
``RLMRecGen.yaml`` (the alignment) only; the LLM's ``llm_*`` keys in ``llm.yaml``."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str

SHARED_KEYS = {
    # LightGCN backbone (RecBole's keys)
    "embedding_size": Int(min=1),
    "n_layers": Int(min=1),
    "reg_weight": Float(min=0),
    "rlmrec_keep_rate": Float(gt=0, max=1),
    # semantic representations
    "rlmrec_profile_source": Choice("generated", "generated_users", "item_text"),
    "rlmrec_history_items": Int(min=0),
    "rlmrec_item_text_max_tokens": Int(min=0),
    "rlmrec_user_instruction": Str(non_empty=True),
    "rlmrec_item_instruction": Str(non_empty=True),
    "rlmrec_user_context": Str(non_empty=True),
    "rlmrec_item_context": Str(non_empty=True),
    "rlmrec_item_format": Str(non_empty=True),
    "rlmrec_gen_max_new_tokens": Int(min=1),
    "rlmrec_gen_batch_size": Int(min=1),
    "rlmrec_gen_chat_template": Bool(),
    "rlmrec_gen_system_prompt": Str(),
    "rlmrec_gen_cache": Bool(),
}

RLMREC_CON_SETTINGS = Settings("RLMRecCon", prefix="rlmrec_", yaml_hint="properties/model/RLMRec.yaml or RLMRecCon.yaml",
                               keys={**SHARED_KEYS,
    "rlmrec_kd_weight": Float(min=0),
    "rlmrec_kd_temperature": Float(gt=0),
})

RLMREC_GEN_SETTINGS = Settings("RLMRecGen", prefix="rlmrec_", yaml_hint="properties/model/RLMRec.yaml or RLMRecGen.yaml",
                               keys={**SHARED_KEYS,
    "rlmrec_mask_ratio": Float(gt=0, max=1),
    "rlmrec_recon_weight": Float(min=0),
    "rlmrec_recon_temperature": Float(gt=0),
})

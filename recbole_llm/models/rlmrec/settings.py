"""RLMRec-Con's and RLMRec-Gen's settings: what each key must be. Defaults live in
``properties/model/RLMRec.yaml`` (shared: LightGCN, profiles) and ``RLMRecCon.yaml`` /
``RLMRecGen.yaml`` (the alignment) only; the LLM's ``llm_*`` keys in ``llm.yaml``."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str

SHARED_KEYS = {
    # LightGCN backbone (RecBole's keys)
    "embedding_size": Int(min=1, doc="LightGCN backbone's embedding size (RecBole's key)"),
    "n_layers": Int(min=1, doc="LightGCN backbone's propagation layers (RecBole's key)"),
    "reg_weight": Float(min=0, doc="LightGCN backbone's L2 weight (RecBole's key)"),
    "rlmrec_keep_rate": Float(gt=0, max=1, doc="edge dropout in training: each edge kept with this probability"),
    # semantic representations
    "rlmrec_profile_source": Choice("generated", "generated_users", "item_text", doc=(
        "semantic representations: generated (LLM profiles of users and items) | generated_users (items: their "
        "text) | item_text (no LLM)")),
    "rlmrec_history_items": Int(min=0, doc="training items a user's profile prompt lists, newest first (0 = all)"),
    "rlmrec_item_text_max_tokens": Int(min=0, doc="token budget of each item text in a prompt (0 = no cut)"),
    "rlmrec_user_instruction": Str(non_empty=True, doc="instruction asking the LLM for a user profile"),
    "rlmrec_item_instruction": Str(non_empty=True, doc="instruction asking the LLM for an item profile"),
    "rlmrec_user_context": Str(non_empty=True, doc="user profile prompt context; field {items}"),
    "rlmrec_item_context": Str(non_empty=True, doc="item profile prompt context; field {text}"),
    "rlmrec_item_format": Str(non_empty=True, doc="one item line in a user's context; fields {n}, {text}"),
    "rlmrec_gen_max_new_tokens": Int(min=1, doc="tokens generated per profile"),
    "rlmrec_gen_batch_size": Int(min=1, doc=(
        "prompts per generation batch (left-padded; padding can change low-order digits)")),
    "rlmrec_gen_chat_template": Bool(doc="wrap generation prompts in the LLM's chat template"),
    "rlmrec_gen_system_prompt": Str(doc="system message of the chat template (\"\" = the template's own default)"),
    "rlmrec_gen_cache": Bool(doc=(
        "reuse generated profiles cached on disk (keyed by the LLM, prompts and generation "
        "settings)"), changes_results=False),
}

RLMREC_CON_SETTINGS = Settings("RLMRecCon", prefix="rlmrec_", yaml_hint="properties/model/RLMRec.yaml or RLMRecCon.yaml",
                               keys={**SHARED_KEYS,
    "rlmrec_kd_weight": Float(min=0, doc=(
        "RLMRec-Con: weight of the InfoNCE alignment with the semantic representations")),
    "rlmrec_kd_temperature": Float(gt=0, doc="RLMRec-Con: temperature of that InfoNCE"),
})

RLMREC_GEN_SETTINGS = Settings("RLMRecGen", prefix="rlmrec_", yaml_hint="properties/model/RLMRec.yaml or RLMRecGen.yaml",
                               keys={**SHARED_KEYS,
    "rlmrec_mask_ratio": Float(gt=0, max=1, doc="RLMRec-Gen: share of all nodes masked per step"),
    "rlmrec_recon_weight": Float(min=0, doc="RLMRec-Gen: weight of the masked reconstruction loss"),
    "rlmrec_recon_temperature": Float(gt=0, doc="RLMRec-Gen: temperature of its InfoNCE"),
})

"""GLTA's settings: what each key must be. Their defaults live in ``properties/model/GLTA.yaml``
only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, lightgcn_stage

#: Stage 1, RecBole's LightGCN; it trains on the run's own loader, so RecBole's train_batch_size is its batch size.
GRAPH_STAGE = lightgcn_stage("glta_graph_", batch_size=False)

INFERENCE_MODES = ("first_k", "autoregressive", "first_logit")

GLTA_SETTINGS = Settings("GLTA", prefix="glta_", keys={
    # ablation switches (benchmark suite glta_ablation)
    "glta_item_alignment": Bool(),
    "glta_user_alignment": Bool(),
    "glta_profile_tokens": Bool(),
    "glta_prediction_tokens": Bool(),
    "glta_inference": Choice(*INFERENCE_MODES),
    # stage graph: RecBole's LightGCN
    **GRAPH_STAGE.keys,
    # stage item_text
    "glta_ia_epochs": Int(min=0),
    "glta_ia_learning_rate": Float(gt=0),
    "glta_ia_batch_size": Int(min=1),
    "glta_ia_items_per_prompt": Int(min=1),
    "glta_ia_template": Str(non_empty=True),
    "glta_ia_description_format": Str(),
    # stage generate
    "glta_gen_history_items": Int(min=0),
    "glta_gen_item_text_max_tokens": Int(min=0),
    "glta_gen_max_new_tokens": Int(min=1),
    "glta_gen_batch_size": Int(min=1),
    "glta_gen_chat_template": Bool(),
    "glta_gen_system_prompt": Str(nullable=True),
    "glta_gen_context_template": Str(non_empty=True),
    "glta_gen_item_format": Str(),
    "glta_profile_instruction": Str(non_empty=True),
    "glta_prediction_instruction": Str(non_empty=True),
    "glta_gen_cache": Bool(),
    # stage user_item and the GLLM layer
    "glta_ua_epochs": Int(min=0),
    "glta_ua_learning_rate": Float(gt=0),
    "glta_ua_batch_size": Int(min=1),
    "glta_slots": Int(min=1),
    "glta_infer_slots": Int(min=0),
    "glta_history_items": Int(min=0),
    "glta_ua_target_fraction": Float(gt=0, max=1),
    "glta_ua_targets_in_history": Bool(),
    "glta_text_max_tokens": Int(min=0),
    "glta_item_text_max_tokens": Int(min=0),
    "glta_slot_token": Str(non_empty=True),
    "glta_slot_input": Choice("token", "user"),
    "glta_ua_template": Str(non_empty=True),
    "glta_ua_profile_format": Str(),
    "glta_ua_prediction_format": Str(),
    "glta_ua_user_text_format": Str(),
    "glta_ua_empty_history": Str(),
    "glta_gllm_head": Choice("linear", "graph"),
    "glta_head_init": Choice("carry", "reset", "probe"),
    "glta_head_init_ridge": Float(gt=0),
    "glta_keep_initial": Bool(),
    "glta_weight_decay": Float(min=0),
    "glta_head_epochs": Int(min=0),
    "glta_head_batch_size": Int(min=1),
    "glta_projector_norm_match": Bool(),
    "glta_projector_center": Bool(),
    # efficiency
    "glta_prefix_cache": Bool(),
    "glta_kv_cache_dtype": Choice("float16", "bfloat16", "float32"),
    "glta_kv_cache_device": Choice("cpu", "llm"),
    "glta_kv_cache_max_gb": Float(min=0),
    "glta_prefix_batch_size": Int(min=1),
    "glta_eval_batch_size": Int(min=1),
    "glta_score_cache_states": Int(min=1),
})

"""GLTA's settings: what each key must be. Their defaults live in ``properties/model/GLTA.yaml``
only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, lightgcn_stage

#: Stage 1, RecBole's LightGCN; it trains on the run's own loader, so RecBole's train_batch_size is its batch size.
GRAPH_STAGE = lightgcn_stage("glta_graph_", batch_size=False)

INFERENCE_MODES = ("first_k", "autoregressive", "first_logit")

GLTA_SETTINGS = Settings("GLTA", prefix="glta_", keys={
    # ablation switches (benchmark suite glta_ablation)
    "glta_item_alignment": Bool(doc=(
        "item-text alignment stage (False = w/o IA: no item-text stage, both projectors train in user-item "
        "alignment)")),
    "glta_user_alignment": Bool(doc=(
        "user tokens from the user projector (False = w/o UA: the user's id as text instead)")),
    "glta_profile_tokens": Bool(doc="the generated profile text in the user-item prompt (False = w/o PF)"),
    "glta_prediction_tokens": Bool(doc="the generated prediction text in the user-item prompt (False = w/o PD)"),
    "glta_inference": Choice(*INFERENCE_MODES, doc=(
        "how slot outputs become item scores: first_k (paper) | autoregressive (AR) | first_logit (FL)")),
    # stage graph: RecBole's LightGCN
    **GRAPH_STAGE.keys,
    # stage item_text
    "glta_ia_epochs": Int(min=0, doc="item-text alignment epochs (stage item_text)"),
    "glta_ia_learning_rate": Float(gt=0, doc="item-text alignment learning rate (item projector and GLLM layer)"),
    "glta_ia_batch_size": Int(min=1, doc="item-text alignment prompts per step"),
    "glta_ia_items_per_prompt": Int(min=1, doc="items whose descriptions and tokens one item-text prompt holds"),
    "glta_ia_template": Str(non_empty=True, doc="item-text prompt; fields {descriptions}, {item_tokens}, {slots}"),
    "glta_ia_description_format": Str(doc="one item's description line in the item-text prompt; fields {n}, {text}"),
    # stage generate
    "glta_gen_history_items": Int(min=0, doc=(
        "last training items whose descriptions the LLM reads to write profile/prediction texts")),
    "glta_gen_item_text_max_tokens": Int(min=0, doc=(
        "token budget of each item description in the generation prompts")),
    "glta_gen_max_new_tokens": Int(min=1, doc="tokens generated per profile/prediction text"),
    "glta_gen_batch_size": Int(min=1, doc=(
        "prompts per generation batch (left-padded; padding can change low-order digits)")),
    "glta_gen_chat_template": Bool(doc="wrap generation prompts in the LLM's chat template"),
    "glta_gen_system_prompt": Str(nullable=True, doc=(
        "system message of the chat template (\"\" or ~: the template's own default)")),
    "glta_gen_context_template": Str(non_empty=True, doc=(
        "generation context; field {items} (the user's history lines)")),
    "glta_gen_item_format": Str(doc="one history line in the generation context; fields {n}, {text}"),
    "glta_profile_instruction": Str(non_empty=True, doc="instruction asking the LLM for the user's profile text"),
    "glta_prediction_instruction": Str(non_empty=True, doc=(
        "instruction asking the LLM for the user's prediction text")),
    "glta_gen_cache": Bool(doc=(
        "reuse generated texts cached on disk (keyed by the LLM, prompts and generation "
        "settings)"), changes_results=False),
    # stage user_item and the GLLM layer
    "glta_ua_epochs": Int(min=0, doc="user-item alignment (Eq. 3) epochs; validation selects among them"),
    "glta_ua_learning_rate": Float(gt=0, doc="user-item alignment learning rate (user projector and GLLM layer)"),
    "glta_ua_batch_size": Int(min=1, doc="user-item alignment users per step"),
    "glta_slots": Int(min=1, doc="L, the prediction slots per user-item prompt"),
    "glta_infer_slots": Int(min=0, doc="k, the slots read at inference (0 = L)"),
    "glta_history_items": Int(min=0, doc="history item tokens per user-item prompt (training split only)"),
    "glta_ua_target_fraction": Float(gt=0, max=1, doc=(
        "share of a user's training items used as targets in an epoch (at most L)")),
    "glta_ua_targets_in_history": Bool(doc=(
        "targets also appear in the prompt's history (True: the literal reading of the paper)")),
    "glta_text_max_tokens": Int(min=0, doc="token budget of the profile / prediction text in the user-item prompt"),
    "glta_item_text_max_tokens": Int(min=0, doc="token budget of each item description in prompts"),
    "glta_slot_token": Str(non_empty=True, doc=(
        "text whose embedding is a prediction slot's input (glta_slot_input: token)")),
    "glta_slot_input": Choice("token", "user", doc=(
        "a slot's input: token (glta_slot_token's embedding, paper) | user (the user's projected token; w/o UA: "
        "token)")),
    "glta_ua_template": Str(non_empty=True, doc=(
        "user-item prompt; fields {profile}, {prediction}, {user}, {history}, {slots}")),
    "glta_ua_profile_format": Str(doc="profile line of the user-item prompt; field {text}"),
    "glta_ua_prediction_format": Str(doc="prediction line of the user-item prompt; field {text}"),
    "glta_ua_user_text_format": Str(doc="the user as text under w/o UA; field {id}"),
    "glta_ua_empty_history": Str(doc="history text of a user without history items"),
    "glta_gllm_head": Choice("linear", "graph", doc=(
        "GLLM item layer: linear (a free |I| x H weight, paper text) | graph (weight = E_i G, docs/glta.md)")),
    "glta_head_init": Choice("carry", "reset", "probe", doc=(
        "GLLM layer at the start of user-item alignment: carry (from item-text) | reset | probe (ridge fit to E_u)")),
    "glta_head_init_ridge": Float(gt=0, doc=(
        "ridge strength of the probe (times the mean eigenvalue of the centred states' Gram matrix)")),
    "glta_keep_initial": Bool(doc=(
        "also keep the state before the first Eq. 3 epoch if it validates best (the variant \"GLTA probe only\", not "
        "GLTA)")),
    "glta_weight_decay": Float(min=0, doc="weight decay of both alignment stages"),
    "glta_head_epochs": Int(min=0, doc="GLLM-only passes after each alignment epoch on the slot states it computed"),
    "glta_head_batch_size": Int(min=1, doc="slot states per step of the GLLM-only passes"),
    "glta_projector_norm_match": Bool(doc=(
        "scale fresh projectors' outputs to the norm of the LLM's token embeddings")),
    "glta_projector_center": Bool(doc=(
        "with norm matching: bias = -W mean(E), so the deviations from the mean get that norm")),
    # efficiency
    "glta_prefix_cache": Bool(doc=(
        "compute the keys/values of each prompt's shared leading text once (stored in glta_kv_cache_dtype)")),
    "glta_kv_cache_dtype": Choice("float16", "bfloat16", "float32", doc=(
        "storage dtype of cached keys/values: float16 | bfloat16 | float32")),
    "glta_kv_cache_device": Choice("cpu", "llm", doc=(
        "where cached keys/values live: cpu (host memory, moved per batch) | llm (the LLM's "
        "device)"), changes_results=False),
    "glta_kv_cache_max_gb": Float(min=0, doc=(
        "bound on the prefix cache in GB (0 = none); prefixes past it are recomputed per batch")),
    "glta_prefix_batch_size": Int(min=1, doc="prefixes per forward when filling the prefix cache"),
    "glta_eval_batch_size": Int(min=1, doc="users per inference forward"),
    "glta_score_cache_states": Int(min=1, doc=(
        "parameter states whose all-user scores are kept (the best epoch's reload reuses "
        "them)"), changes_results=False),
})

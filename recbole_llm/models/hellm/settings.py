"""HeLLMPre's and HeLLM's settings: what each key must be. Defaults live in
``properties/model/HeLLMPre.yaml`` and ``properties/model/HeLLM.yaml`` only (the LLM's ``llm_*``
keys in ``properties/model/llm.yaml``; ``HeLLM-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str, pretrain_stage, sasrec_stage

#: Stage 1: HeLLMPre (graph embeddings) and RecBole's SASRec (hidden size: HeLLMPre's embedding_size),
#: both on the training split.
GRAPH_STAGE = pretrain_stage("hellm_graph_", "HeLLMPre")
SASREC_STAGE = sasrec_stage("hellm_sasrec_", hidden_size=False)

MODALITIES = ("auto", "text", "image", "text+image")

HELLMPRE_SETTINGS = Settings("HeLLMPre", prefix="hellmpre_", keys={
    "embedding_size": Int(min=1),
    # ablation switches (benchmark suite hellm_table: w/o U2U, w/o I2I, w/o CL)
    "hellmpre_u2u": Bool(),
    "hellmpre_i2i": Bool(),
    "hellmpre_cl": Bool(),
    # graphs
    "hellmpre_ui_layers": Int(min=0),
    "hellmpre_user_layers": Int(min=1),
    "hellmpre_item_layers": Int(min=1),
    "hellmpre_topk": Int(min=1),
    "hellmpre_modalities": Choice(*MODALITIES),
    "hellmpre_knn_chunk_size": Int(min=1),
    # Eq. 12
    "hellmpre_temperature": Float(gt=0),
    "hellmpre_user_loss_ratio": Float(min=0),
    "hellmpre_item_loss_ratio": Float(min=0),
    "hellmpre_reg_weight": Float(min=0),
    "hellmpre_cl_chunk_size": Int(min=1),
    "hellmpre_cl_anchors": Int(min=0),
})

HELLM_SETTINGS = Settings("HeLLM", prefix="hellm_", keys={
    # ablation switches (hellm_table: w/o GNN_PEFT, w/o GNN_ID, w/o Seq_ID)
    "hellm_graph_prefix": Bool(),
    "hellm_graph_id": Bool(),
    "hellm_seq_id": Bool(),
    "hellm_bilinear": Bool(),
    # stage 1: HeLLMPre (graph embeddings) and RecBole's SASRec, both on the training split
    **GRAPH_STAGE.keys,
    **SASREC_STAGE.keys,
    # prefixes (Eqs. 8-11)
    "hellm_prefix_len": Int(min=1),
    "hellm_prefix_hidden": Int(min=1),
    "hellm_prefix_dropout": Float(min=0, max=1),
    # item tokens and prompt
    "hellm_max_history": Int(min=1),
    "hellm_item_mlp_hidden": Int(min=0),
    "hellm_head": Choice("linear", "stage1"),
    "hellm_instruction": Str(non_empty=True),
    "hellm_prompt_head": Str(non_empty=True),
    "hellm_prompt_tail": Str(non_empty=True),
    # LoRA (peft) on the feed-forward projections
    "hellm_lora_r": Int(min=1),
    "hellm_lora_alpha": Float(gt=0),
    "hellm_lora_dropout": Float(min=0, max=1),
    "hellm_lora_targets": Str(non_empty=True),
    # fine-tuning
    "hellm_epochs": Int(min=0),
    "hellm_learning_rate": Float(gt=0),
    "hellm_min_learning_rate": Float(min=0),
    "hellm_warmup_epochs": Float(min=0),
    "hellm_weight_decay": Float(min=0),
    "hellm_batch_size": Int(min=1),
    "hellm_samples_per_epoch": Int(min=0),
    "hellm_eval_batch_size": Int(min=1),
})

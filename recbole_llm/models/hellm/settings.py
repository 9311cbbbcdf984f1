"""HeLLMPre's and HeLLM's settings: what each key must be. Defaults live in
``properties/model/HeLLMPre.yaml`` and ``properties/model/HeLLM.yaml`` only (the LLM's ``llm_*``
keys in ``properties/model/llm.yaml``; ``HeLLM-paper.yaml`` overrides for the paper's setup)."""

from recbole_llm.settings import (Bool, Choice, Float, Int, Settings, Str,
                                  lora_keys, pretrain_stage, sasrec_stage, tuning_schedule_keys)

#: Stage 1: HeLLMPre (graph embeddings) and RecBole's SASRec (hidden size: HeLLMPre's embedding_size),
#: both on the training split.
GRAPH_STAGE = pretrain_stage("hellm_graph_", "HeLLMPre")
SASREC_STAGE = sasrec_stage("hellm_sasrec_", hidden_size=False)

MODALITIES = ("auto", "text", "image", "text+image")

HELLMPRE_SETTINGS = Settings("HeLLMPre", prefix="hellmpre_", keys={
    "embedding_size": Int(min=1, doc="HeLLMPre's embedding size, also the modality projections' size"),
    # ablation switches (benchmark suite hellm_table: w/o U2U, w/o I2I, w/o CL)
    "hellmpre_u2u": Bool(doc="the user-user hypergraph (False = w/o U2U)"),
    "hellmpre_i2i": Bool(doc="the item-item hypergraph (False = w/o I2I)"),
    "hellmpre_cl": Bool(doc="the contrastive terms of Eq. 12 (False = w/o CL: hypergraph views fused, no contrast)"),
    # graphs
    "hellmpre_ui_layers": Int(min=0, doc="LightGCN layers on the user-item graph (UI_layers)"),
    "hellmpre_user_layers": Int(min=1, doc="U2U hypergraph propagation steps"),
    "hellmpre_item_layers": Int(min=1, doc="I2I hypergraph propagation steps"),
    "hellmpre_topk": Int(min=1, doc="neighbours per item in each modality's kNN graph"),
    "hellmpre_modalities": Choice(*MODALITIES, doc=(
        "item features of the I2I graph: auto (text if present, image if image_feat.npy exists) | text | image | "
        "text+image")),
    "hellmpre_knn_chunk_size": Int(min=1, doc=(
        "rows of the cosine kNN computed at a time (a memory bound; float rounding may differ)")),
    # Eq. 12
    "hellmpre_temperature": Float(gt=0, doc="tau of the contrastive terms (Eq. 12)"),
    "hellmpre_user_loss_ratio": Float(min=0, doc="alpha, weight of the user contrastive term (Eq. 12)"),
    "hellmpre_item_loss_ratio": Float(min=0, doc="beta, weight of the item contrastive term (Eq. 12)"),
    "hellmpre_reg_weight": Float(min=0, doc="lambda, L2 weight on the fused embeddings (Eq. 12)"),
    "hellmpre_cl_chunk_size": Int(min=1, doc=(
        "anchors per chunk of the all-node contrastive loss (a memory bound; float rounding may differ)")),
    "hellmpre_cl_anchors": Int(min=0, doc=(
        "contrastive anchors per step (0 = every node, the authors'; k = k random nodes)")),
})

HELLM_SETTINGS = Settings("HeLLM", prefix="hellm_", keys={
    # ablation switches (hellm_table: w/o GNN_PEFT, w/o GNN_ID, w/o Seq_ID)
    "hellm_graph_prefix": Bool(doc="graph prefixes in every layer (False = w/o GNN_PEFT)"),
    "hellm_graph_id": Bool(doc="graph embeddings in the item tokens (False = w/o GNN_ID: SASRec embeddings only)"),
    "hellm_seq_id": Bool(doc="SASRec embeddings in the item tokens (False = w/o Seq_ID: graph embeddings only)"),
    "hellm_bilinear": Bool(doc="Eq. 9's W trainable (initialised to I); False = the authors' code (W = I)"),
    # stage 1: HeLLMPre (graph embeddings) and RecBole's SASRec, both on the training split
    **GRAPH_STAGE.keys,
    **SASREC_STAGE.keys,
    # prefixes (Eqs. 8-11)
    "hellm_prefix_len": Int(min=1, doc="P, prefix slots per layer"),
    "hellm_prefix_hidden": Int(min=1, doc="hidden size of MLP_K / MLP_V that make the prefixes"),
    "hellm_prefix_dropout": Float(min=0, max=1, doc="dropout on the prefixes"),
    # item tokens and prompt
    "hellm_max_history": Int(min=1, doc="last history items in the prompt, also SASRec's sequence length"),
    "hellm_item_mlp_hidden": Int(min=0, doc="hidden size of the item-token MLP (0 = the LLM's hidden size)"),
    "hellm_head": Choice("linear", "stage1", doc=(
        "Eq. 14's W_o: linear (a free items x hidden matrix) | stage1 ([G ; S] P over the frozen stage-1 tables, "
        "only P trains)")),
    "hellm_instruction": Str(non_empty=True, doc="the task instruction ({instruction} in the prompt head)"),
    "hellm_prompt_head": Str(non_empty=True, doc="prompt text before the history items"),
    "hellm_prompt_tail": Str(non_empty=True, doc="prompt text after the history items"),
    # LoRA (peft) on the feed-forward projections
    **lora_keys("hellm_"),
    # fine-tuning
    "hellm_epochs": Int(min=0, doc="fine-tuning epochs"),
    "hellm_learning_rate": Float(gt=0, doc="fine-tuning peak learning rate"),
    "hellm_weight_decay": Float(min=0, doc="fine-tuning weight decay"),
    "hellm_batch_size": Int(min=1, doc="fine-tuning samples per step"),
    **tuning_schedule_keys("hellm_", "training prefixes"),
    "hellm_eval_batch_size": Int(min=1, doc="users per scoring forward"),
})

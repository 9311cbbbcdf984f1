"""UniSRec's settings: what each key must be. Defaults live in ``properties/model/UniSRec.yaml``
only (``UniSRec-paper.yaml`` overrides for the paper's setup). The SASRec keys (``n_layers``,
``hidden_size`` ...) are read by RecBole's SASRec and described and checked here with UniSRec's own."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str

UNISREC_SETTINGS = Settings("UniSRec", prefix="unisrec_", keys={
    # the SASRec sequence encoder (RecBole's keys, read by RecBole's SASRec)
    "hidden_size": Int(min=1, doc="SASRec encoder's hidden size, also the adaptor's output (RecBole's key)"),
    "n_layers": Int(min=1, doc="SASRec encoder's transformer layers (RecBole's key)"),
    "n_heads": Int(min=1, doc="SASRec encoder's attention heads (RecBole's key)"),
    "inner_size": Int(min=1, doc="SASRec encoder's feed-forward size (RecBole's key)"),
    "hidden_dropout_prob": Float(min=0, max=1, doc="SASRec encoder's hidden dropout (RecBole's key)"),
    "attn_dropout_prob": Float(min=0, max=1, doc="SASRec encoder's attention dropout (RecBole's key)"),
    "hidden_act": Choice("gelu", "relu", "swish", "tanh", "sigmoid", doc="SASRec encoder's activation (RecBole's key)"),
    "layer_norm_eps": Float(gt=0, doc="SASRec encoder's layer-norm epsilon (RecBole's key)"),
    "initializer_range": Float(gt=0, doc="standard deviation of SASRec's weight initialisation (RecBole's key)"),
    "MAX_ITEM_LIST_LENGTH": Int(min=1, doc="longest history fed to the encoder, newest kept (RecBole's key)"),
    "loss_type": Choice("CE", doc="softmax over all items (CE, the only loss without a negative sampler here)"),
    # fine-tuning mode (paper Sec. 2.4.2): inductive = text only, transductive = text + item ID
    "unisrec_mode": Choice("inductive", "transductive", doc=(
        "fine-tuning mode: inductive (text only, no item ID table) | transductive (text + item ID)")),
    # MoE adaptor of parametric-whitening experts (Sec. 2.2)
    "unisrec_n_exps": Int(min=1, doc="experts of the MoE adaptor"),
    "unisrec_adaptor_dropout_prob": Float(min=0, max=1, doc="dropout on the adaptor's inputs"),
    "unisrec_noisy_gating": Bool(doc="noisy top gating of the MoE adaptor in training"),
    "unisrec_temperature": Float(gt=0, doc="temperature of the contrastive and fine-tuning softmax"),
    # pre-training (Sec. 2.3): sequence-item + lambda * sequence-sequence contrast
    "unisrec_pretrain_epochs": Int(min=0, doc="pre-training epochs (0 = fine-tune from scratch)"),
    "unisrec_pretrain_learning_rate": Float(gt=0, doc="pre-training learning rate"),
    "unisrec_pretrain_datasets": Str(doc=(
        "comma-separated datasets to pre-train on (their training splits, same split settings); \"\" = this "
        "dataset")),
    "unisrec_lambda": Float(min=0, doc="weight of the sequence-sequence contrast in pre-training"),
    "unisrec_item_drop_ratio": Float(min=0, max=1, doc="items dropped from a sequence for the item-drop view"),
    "unisrec_item_drop_coefficient": Float(min=0, max=1, doc=(
        "share of batches augmented by item drop (the rest: word drop)")),
    "unisrec_word_drop_ratio": Float(min=0, max=1, doc=(
        "words dropped from item texts for the word-drop view (0 = item drop only)")),
    # fine-tuning (Sec. 2.4): the pre-trained sequence encoder stays fixed
    "unisrec_freeze_encoder": Bool(doc="fine-tuning keeps the pre-trained transformer fixed"),
})

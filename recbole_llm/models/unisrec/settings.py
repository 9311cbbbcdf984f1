"""UniSRec's settings: what each key must be. Defaults live in ``properties/model/UniSRec.yaml``
only (``UniSRec-paper.yaml`` overrides for the paper's setup). The SASRec keys (``n_layers``,
``hidden_size`` ...) are read by RecBole's SASRec; the ones UniSRec itself depends on are checked here."""

from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Str

UNISREC_SETTINGS = Settings("UniSRec", prefix="unisrec_", keys={
    "hidden_size": Int(min=1),
    "loss_type": Choice("CE"),
    # fine-tuning mode (paper Sec. 2.4.2): inductive = text only, transductive = text + item ID
    "unisrec_mode": Choice("inductive", "transductive"),
    # MoE adaptor of parametric-whitening experts (Sec. 2.2)
    "unisrec_n_exps": Int(min=1),
    "unisrec_adaptor_dropout_prob": Float(min=0, max=1),
    "unisrec_noisy_gating": Bool(),
    "unisrec_temperature": Float(gt=0),
    # pre-training (Sec. 2.3): sequence-item + lambda * sequence-sequence contrast
    "unisrec_pretrain_epochs": Int(min=0),
    "unisrec_pretrain_learning_rate": Float(gt=0),
    "unisrec_pretrain_datasets": Str(),  # comma-separated dataset names; "" = this dataset
    "unisrec_lambda": Float(min=0),
    "unisrec_item_drop_ratio": Float(min=0, max=1),
    "unisrec_item_drop_coefficient": Float(min=0, max=1),
    "unisrec_word_drop_ratio": Float(min=0, max=1),
    # fine-tuning (Sec. 2.4): the pre-trained sequence encoder stays fixed
    "unisrec_freeze_encoder": Bool(),
})

"""GraphAttentiveGPT2's settings: what each ``gat_*`` key must be. Their defaults live in
``properties/model/GraphAttentiveGPT2.yaml`` only (the LLM's ``llm_*`` keys in ``properties/model/llm.yaml``)."""

from recbole_llm.graph.hops import BIAS_MODES, R_PATH_FORMS
from recbole_llm.settings import Bool, Choice, Float, Int, Settings, Spec, Str

#: Stage-1 corpora (crowd-context prompts).
CORPORA = ("content", "second_order", "review", "events")
TRAINABLE = ("full", "frozen", "lora")


class StrList(Spec):
    """A list of strings (optionally restricted to ``choices``)."""

    def __init__(self, choices=None, **common):
        super().__init__(**common)
        self.choices = choices

    def describe(self):
        return ("a list of strings" + (f" from {', '.join(self.choices)}" if self.choices else "")
                + (" or ~" if self.nullable else ""))

    def convert(self, value):
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError
        if self.choices and any(v not in self.choices for v in value):
            raise ValueError
        return tuple(value)


class StrMap(Spec):
    """A mapping of strings to strings."""

    def describe(self):
        return "a mapping of field names to prompt templates" + (" or ~" if self.nullable else "")

    def convert(self, value):
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError
        return dict(value)


GAT_SETTINGS = Settings("GraphAttentiveGPT2", prefix="gat_", keys={
    # ablation switches (benchmark suite gat_gpt2_table)
    "gat_pretrain": Bool(doc="run the pretraining stages 1-2 (False = NoPretrain: fresh ID tables, public backbone)"),
    "gat_finetune": Bool(doc="run stage 3 (False = NoFineTune: the stage-2 model is scored with the tied item head)"),
    "gat_collab_pretrain": Bool(doc=(
        "run stage 2, collaborative pretraining on event prompts (False with gat_corpus [review]: NoGHIP)")),
    "gat_corpus": StrList(CORPORA, doc=(
        "stage-1 corpora, from content, second_order, review, events (ablations drop some)")),
    # graph bias R
    "gat_graph_bias": Choice(*BIAS_MODES, doc=(
        "attention bias R: graph | ones (R = 1 on ID pairs, a meaningless injection) | none (NoGKIA)")),
    "gat_r_path": Choice(*R_PATH_FORMS, doc=(
        "R_path's form: linear (1 - P/K)+ (the authors' code) | exp (delta**P for P <= K)")),
    "gat_max_hops": Int(min=1, max=254, doc="K, the hop cap; pairs further apart get R_path = 0"),
    "gat_delta": Float(gt=0, max=1, doc="base delta of the exp form of R_path"),
    "gat_hop_cache": Bool(doc=(
        "cache the uint8 hop table per training split on disk (RECBOLE_LLM_CACHE/hops)"), changes_results=False),
    # backbone: what trains
    "gat_trainable": Choice(*TRAINABLE, doc=(
        "what of the backbone trains: full (authors' code) | frozen (ID tables only) | lora (peft)")),
    "gat_llm_layers": Int(min=0, doc="keep the first N decoder blocks of the backbone (0 = all)"),
    "gat_train_word_embeddings": Bool(doc="with full training: also train the word table (and the tied LM head)"),
    "gat_lora_r": Int(min=1, doc="LoRA rank (gat_trainable: lora)"),
    "gat_lora_alpha": Float(gt=0, doc="LoRA scaling alpha"),
    "gat_lora_dropout": Float(min=0, max=1, doc="LoRA dropout"),
    "gat_lora_targets": StrList(doc="LoRA target modules ([] = by model type: GPT-2 c_attn; Llama q_proj, v_proj)"),
    "gat_id_init_std": Float(gt=0, doc="standard deviation of the user/item ID tables' normal initialisation"),
    # prompts
    "gat_content_templates": StrMap(doc=(
        "stage-1 content prompts: item field -> template (fields the dataset lacks are skipped)")),
    "gat_review_template": Str(non_empty=True, doc="stage-1 review prompt template"),
    "gat_review_field": Str(non_empty=True, doc="text column of <dataset>.review holding the reviews"),
    "gat_group_fields": StrMap(doc=(
        "second-order prompts: item field -> template over items sharing a value of the field")),
    "gat_event_template": Str(non_empty=True, doc="stage-2 event (interaction) prompt template"),
    "gat_finetune_template": Str(non_empty=True, doc="stage-3 fine-tuning / scoring prompt template"),
    "gat_main_max_tokens": Int(min=1, doc="answer tokens kept per pretraining prompt"),
    "gat_chunk_items": Int(min=1, doc="items per event / second-order prompt (shuffled chunks)"),
    "gat_max_history": Int(min=1, doc="history items in the fine-tuning / scoring prompt (newest kept)"),
    # stage 1: crowd-context pretraining
    "gat_content_epochs": Int(min=0, doc="stage-1 (crowd-context pretraining) epochs"),
    "gat_content_prompts": Int(min=0, doc="stage-1 prompts drawn per epoch (0 = all)"),
    "gat_content_batch_size": Int(min=1, doc="stage-1 prompts per step"),
    # stage 2: collaborative pretraining
    "gat_collab_epochs": Int(min=0, doc="stage-2 (collaborative pretraining) epochs"),
    "gat_collab_prompts": Int(min=0, doc="stage-2 event prompts drawn per epoch (0 = all)"),
    "gat_collab_batch_size": Int(min=1, doc="stage-2 prompts per step"),
    # stage 3: fine-tuning
    "gat_finetune_epochs": Int(min=0, doc="stage-3 (fine-tuning) epochs"),
    "gat_finetune_batch_size": Int(min=1, doc="stage-3 users per step"),
    "gat_finetune_users": Int(min=0, doc="stage-3 users per epoch (0 = all)"),
    "gat_hide_fraction": Float(min=0, max=1, doc=(
        "share of a user's training items hidden from the prompt each fine-tuning epoch")),
    "gat_finetune_target": Choice("all", "hidden", doc=(
        "fine-tuning target: all (the bag of all training items, authors' code) | hidden (only the hidden ones)")),
    # learning rates
    "gat_id_learning_rate": Float(gt=0, doc="learning rate of the ID tables"),
    "gat_backbone_learning_rate": Float(gt=0, doc="learning rate of the trainable backbone part (full or LoRA)"),
    "gat_weight_decay": Float(min=0, doc="weight decay of all stages"),
    # evaluation
    "gat_eval_batch_size": Int(min=1, doc="users per scoring forward"),
})

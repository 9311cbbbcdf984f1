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
    "gat_pretrain": Bool(),
    "gat_finetune": Bool(),
    "gat_collab_pretrain": Bool(),
    "gat_corpus": StrList(CORPORA),
    # graph bias R
    "gat_graph_bias": Choice(*BIAS_MODES),
    "gat_r_path": Choice(*R_PATH_FORMS),
    "gat_max_hops": Int(min=1, max=254),
    "gat_delta": Float(gt=0, max=1),
    "gat_hop_cache": Bool(),
    # backbone: what trains
    "gat_trainable": Choice(*TRAINABLE),
    "gat_llm_layers": Int(min=0),
    "gat_train_word_embeddings": Bool(),
    "gat_lora_r": Int(min=1),
    "gat_lora_alpha": Float(gt=0),
    "gat_lora_dropout": Float(min=0, max=1),
    "gat_lora_targets": StrList(),
    "gat_id_init_std": Float(gt=0),
    # prompts
    "gat_content_templates": StrMap(),
    "gat_review_template": Str(non_empty=True),
    "gat_review_field": Str(non_empty=True),
    "gat_group_fields": StrMap(),
    "gat_event_template": Str(non_empty=True),
    "gat_finetune_template": Str(non_empty=True),
    "gat_main_max_tokens": Int(min=1),
    "gat_chunk_items": Int(min=1),
    "gat_max_history": Int(min=1),
    # stage 1: crowd-context pretraining
    "gat_content_epochs": Int(min=0),
    "gat_content_prompts": Int(min=0),
    "gat_content_batch_size": Int(min=1),
    # stage 2: collaborative pretraining
    "gat_collab_epochs": Int(min=0),
    "gat_collab_prompts": Int(min=0),
    "gat_collab_batch_size": Int(min=1),
    # stage 3: fine-tuning
    "gat_finetune_epochs": Int(min=0),
    "gat_finetune_batch_size": Int(min=1),
    "gat_finetune_users": Int(min=0),
    "gat_hide_fraction": Float(min=0, max=1),
    "gat_finetune_target": Choice("all", "hidden"),
    # learning rates
    "gat_id_learning_rate": Float(gt=0),
    "gat_backbone_learning_rate": Float(gt=0),
    "gat_weight_decay": Float(min=0),
    # evaluation
    "gat_eval_batch_size": Int(min=1),
})

"""Typed, validated model settings read from a RecBole ``Config``: the one place each setting is
described.

A model's defaults live in its YAML only (RecBole's rule); its :class:`Settings` schema says, per
key, what it must be (type, range, choices), what it means (``doc``, one line) and whether it
changes results (``changes_results``; run keys and pretraining cache keys are derived from it), and
nothing about defaults. ``Settings.read(config)`` validates every key once, when the model is built,
and returns a read-only namespace::

    GLTA_SETTINGS = Settings("GLTA", prefix="glta_", keys={
        "glta_inference": Choice("first_k", "autoregressive", "first_logit", doc="how slots become items"),
        "glta_ua_epochs": Int(min=0, doc="user-item alignment epochs"),
        "glta_gen_cache": Bool(changes_results=False, doc="reuse generated texts cached on disk"),
    })
    s = GLTA_SETTINGS.read(config)      # s.inference, s.ua_epochs, s["glta_gen_cache"]

A missing key, a wrong type or a value out of range raises :class:`~recbole_llm.errors.ConfigError`
naming the key, the value and what is allowed. A model registers its schemas through the plugin hook
``register_settings``. The pretraining blocks several models share (:func:`lightgcn_stage`,
:func:`sasrec_stage`) give their schema entries and their override dict from one definition. This
module imports nothing heavy.
"""

from __future__ import annotations

from types import MappingProxyType

from recbole_llm.errors import ConfigError


class Spec:
    """What one setting must be. ``nullable``: ``~`` (None) is a valid value; ``doc``: what the
    setting means, in one line (``--describe`` prints it); ``changes_results``: whether another value
    can change what a run computes (False for cache switches, device placement, thread counts):
    run keys and the pretraining caches' keys hold exactly the settings where it is True."""

    def __init__(self, nullable=False, doc="", changes_results=True):
        self.nullable = nullable
        self.doc = doc
        self.changes_results = changes_results

    def describe(self) -> str:
        raise NotImplementedError

    def convert(self, value):
        """Return the checked value or raise ``ValueError``."""
        raise NotImplementedError

    def check(self, key, value, model):
        if value is None:
            if self.nullable:
                return None
            raise ConfigError(f"{model} setting {key} is null; it must be {self.describe()}.")
        try:
            return self.convert(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{model} setting {key}={value!r} is invalid: it must be {self.describe()}. "
                f"Fix it in your config file or pass --{key}=VALUE."
            ) from None


class _Number(Spec):
    kind = "number"

    def __init__(self, min=None, max=None, gt=None, **common):
        super().__init__(**common)
        self.min, self.max, self.gt = min, max, gt

    def describe(self):
        bounds = []
        if self.gt is not None:
            bounds.append(f"> {self.gt}")
        if self.min is not None:
            bounds.append(f">= {self.min}")
        if self.max is not None:
            bounds.append(f"<= {self.max}")
        text = f"{'an' if self.kind[0] in 'aeiou' else 'a'} {self.kind}" + (" " + " and ".join(bounds) if bounds else "")
        return text + (" or ~" if self.nullable else "")

    def _bounded(self, value):
        if self.gt is not None and not value > self.gt:
            raise ValueError
        if self.min is not None and value < self.min:
            raise ValueError
        if self.max is not None and value > self.max:
            raise ValueError
        return value


class Int(_Number):
    kind = "integer"

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError
        return self._bounded(int(value))


class Float(_Number):
    kind = "number"

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError
        return self._bounded(float(value))


class Bool(Spec):
    def describe(self):
        return "True or False" + (" or ~" if self.nullable else "")

    def convert(self, value):
        if not isinstance(value, bool):
            raise ValueError
        return value


class Str(Spec):
    def __init__(self, non_empty=False, **common):
        super().__init__(**common)
        self.non_empty = non_empty

    def describe(self):
        return ("a non-empty string" if self.non_empty else "a string") + (" or ~" if self.nullable else "")

    def convert(self, value):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        value = str(value)
        if self.non_empty and not value:
            raise ValueError
        return value


class Choice(Spec):
    def __init__(self, *choices, **common):
        super().__init__(**common)
        self.choices = choices

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices)) + (" or ~" if self.nullable else "")

    def convert(self, value):
        if value not in self.choices:
            raise ValueError
        return value


class IntList(Spec):
    """A list of integers, each ``>= min`` (a YAML list, e.g. ``[600]``)."""

    def __init__(self, min=None, non_empty=False, **common):
        super().__init__(**common)
        self.min, self.non_empty = min, non_empty

    def describe(self):
        return (("a non-empty list" if self.non_empty else "a list") + " of integers"
                + (f" >= {self.min}" if self.min is not None else "") + (" or ~" if self.nullable else ""))

    def convert(self, value):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ValueError
        if self.non_empty and not value:
            raise ValueError
        if self.min is not None and any(v < self.min for v in value):
            raise ValueError
        return tuple(value)


class Settings:
    """The schema of one model's settings (keys, types, ranges, choices, one-line docs, whether each
    changes results; never defaults)."""

    def __init__(self, model: str, keys: dict, prefix: str = "", yaml_hint: str | None = None):
        self.model = model
        self.prefix = prefix
        self.keys = dict(keys)
        self.yaml_hint = yaml_hint or f"properties/model/{model}.yaml"

    def attribute(self, key: str) -> str:
        return key[len(self.prefix):] if self.prefix and key.startswith(self.prefix) else key

    def result_keys(self) -> set:
        """The keys whose value can change what a run computes (run keys hold exactly these)."""
        return {key for key, spec in self.keys.items() if spec.changes_results}

    def read(self, config) -> "SettingsView":
        values, names = {}, {}
        for key, spec in self.keys.items():
            present, value = _lookup(config, key)
            if not present:
                raise ConfigError(
                    f"{self.model} setting {key} is not set. Its default belongs in {self.yaml_hint} "
                    f"(the model's YAML, registered through register_property_files); set it there or pass --{key}=VALUE."
                )
            values[self.attribute(key)] = spec.check(key, value, self.model)
            names[key] = self.attribute(key)
        return SettingsView(values, names)

    def __add__(self, other: "Settings") -> "Settings":
        return Settings(self.model, {**self.keys, **other.keys}, self.prefix, self.yaml_hint)


def _lookup(config, key):
    final = getattr(config, "final_config_dict", None)
    if final is not None:
        return (key in final), final.get(key)
    if isinstance(config, dict):
        return (key in config), config.get(key)
    raise TypeError(f"expected a RecBole Config or a dict, got {type(config).__name__}")


class SettingsView:
    """Read-only attribute access to validated settings."""

    __slots__ = ("_values", "_names")

    def __init__(self, values, names=None):
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))
        object.__setattr__(self, "_names", MappingProxyType(dict(names or {name: name for name in values})))

    def __getitem__(self, key):
        """A value by its full setting name (``s["glta_graph_epochs"]``; ``s.graph_epochs`` is the same)."""
        return self._values[self._names[key]]

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("settings are read-only; change the config instead")

    def as_dict(self):
        return dict(self._values)

    def __repr__(self):
        return f"SettingsView({dict(self._values)!r})"


# ----------------------------------------------------------------------------------------------
# Shared pretraining blocks: a RecBole model trained as one stage of another model
# ----------------------------------------------------------------------------------------------
class PretrainStage:
    """The settings of a RecBole model pretrained as a stage of another model (GLTA's and CoLLM's
    LightGCN, HeLLM's and LLaRA's SASRec, HeLLM's HeLLMPre), stated once: :attr:`keys` are the
    schema entries ``<prefix><name>`` (to add to the model's :class:`Settings`), and
    :meth:`overrides` turns their values into the settings ``pretrain_recbole_model`` applies on top
    of the run's config. ``mapped`` is ``{name: (RecBole keys, Spec)}``, ``fixed`` RecBole settings
    every such stage uses. ``<prefix>checkpoint`` (reuse a trained model) and ``<prefix>cache``
    (reuse the cached one; does not change results) are added here and kept out of the overrides,
    which hold exactly the result-affecting settings (so the stage's cache key does too)."""

    def __init__(self, prefix: str, model: str, mapped: dict, fixed: dict | None = None):
        self.prefix, self.model = prefix, model
        self.mapped = {name: ((targets,) if isinstance(targets, str) else tuple(targets), spec)
                       for name, (targets, spec) in mapped.items()}
        self.fixed = dict(fixed or {})
        self.keys = {prefix + name: spec for name, (_, spec) in self.mapped.items()}
        self.keys[prefix + "checkpoint"] = Str(nullable=True, doc=(
            f"a RecBole {model} checkpoint to reuse instead of training one (\"\" or ~: train); it must have "
            "been trained on this run's training split"))
        self.keys[prefix + "cache"] = Bool(changes_results=False, doc=(
            f"reuse the {model} cached for the same training split and settings (off: train it again)"))

    def overrides(self, values, **extra) -> dict:
        """``{RecBole key: value}`` for ``pretrain_recbole_model`` from ``values`` (a
        :class:`SettingsView` or a mapping with the full setting names), plus ``extra``."""
        out = {}
        for name, (targets, spec) in self.mapped.items():
            for target in targets:
                out[target] = values[self.prefix + name]
        return {**out, **self.fixed, **extra}

    def checkpoint(self, values) -> str:
        return values[self.prefix + "checkpoint"] or ""

    def use_cache(self, values) -> bool:
        return bool(values[self.prefix + "cache"])


def _training_block(model, batch_size=True, eval_step=True):
    """The training schedule of a pretraining stage (RecBole's trainer: early stopping on validation)."""
    block = {
        "epochs": ("epochs", Int(min=0, doc=f"{model} training epochs (at most; early stopping on validation)")),
        "learning_rate": ("learning_rate", Float(gt=0, doc=f"{model}'s learning rate (Adam)")),
    }
    if batch_size:
        block["batch_size"] = ("train_batch_size", Int(min=1, doc=f"{model}'s training batch size"))
    block["stopping_step"] = ("stopping_step", Int(min=0, doc=(
        f"stop {model} after this many validations without improvement")))
    if eval_step:
        block["eval_step"] = ("eval_step", Int(min=0, doc=f"validate {model} every this many epochs (0: never)"))
    return block


def pretrain_stage(prefix: str, model: str, *, batch_size=True, eval_step=True, mapped=None, fixed=None):
    """A :class:`PretrainStage` of ``model``: the training schedule (epochs, learning rate, batch size,
    early stopping, validation interval), ``mapped`` architecture settings, Adam without weight
    decay, and the checkpoint and cache keys."""
    return PretrainStage(prefix, model, {**_training_block(model, batch_size, eval_step), **(mapped or {})},
                         {"weight_decay": 0.0, "learner": "adam", **(fixed or {})})


def lora_keys(prefix: str) -> dict:
    """``<prefix>lora_r``, ``lora_alpha``, ``lora_dropout``, ``lora_targets``: peft LoRA on the
    backbone, as every LoRA-tuned model here reads them."""
    return {
        f"{prefix}lora_r": Int(min=1, doc="LoRA rank"),
        f"{prefix}lora_alpha": Float(gt=0, doc="LoRA scaling alpha"),
        f"{prefix}lora_dropout": Float(min=0, max=1, doc="LoRA dropout"),
        f"{prefix}lora_targets": Str(non_empty=True, doc="LoRA target modules (comma-separated names)"),
    }


def tuning_schedule_keys(prefix: str, samples: str = "training samples") -> dict:
    """``<prefix>min_learning_rate``, ``warmup_epochs``, ``samples_per_epoch``: the warm-up and
    cosine schedule of a sampled fine-tuning stage (``StagedTrainer.sampled_stage``)."""
    return {
        f"{prefix}min_learning_rate": Float(min=0, doc="learning rate at the end of the cosine decay"),
        f"{prefix}warmup_epochs": Float(min=0, doc="linear warm-up, in epochs (fractions allowed)"),
        f"{prefix}samples_per_epoch": Int(min=0, doc=f"{samples} drawn per epoch (0 = every one of them)"),
    }


def lightgcn_stage(prefix: str, *, batch_size=True) -> PretrainStage:
    """RecBole's LightGCN as a pretraining stage (``<prefix>embedding_size``, ``n_layers``,
    ``reg_weight``, ``require_pow``, the schedule, checkpoint and cache). ``batch_size=False`` where
    the stage trains on the run's own loader (whose batches RecBole's ``train_batch_size`` sets)."""
    return pretrain_stage(prefix, "LightGCN", batch_size=batch_size, mapped={
        "embedding_size": ("embedding_size", Int(min=1, doc="LightGCN's embedding size")),
        "n_layers": ("n_layers", Int(min=1, doc="LightGCN's propagation layers")),
        "reg_weight": ("reg_weight", Float(min=0, doc="LightGCN's L2 weight on the batch's embeddings")),
        "require_pow": ("require_pow", Bool(doc="LightGCN's regulariser squares the norms (RecBole's require_pow)")),
    })


def sasrec_stage(prefix: str, *, hidden_size=True) -> PretrainStage:
    """RecBole's SASRec (CE loss, GELU, RecBole's initialisation) as a pretraining stage (``<prefix>``
    ``n_layers``, ``n_heads``, ``inner_size``, ``dropout``, ``hidden_size`` unless the caller passes
    it, the schedule, checkpoint and cache; validation every epoch). ``MAX_ITEM_LIST_LENGTH`` comes
    from the caller (``overrides(s, MAX_ITEM_LIST_LENGTH=...)``)."""
    mapped = {
        "n_layers": ("n_layers", Int(min=1, doc="SASRec's transformer layers")),
        "n_heads": ("n_heads", Int(min=1, doc="SASRec's attention heads")),
        "inner_size": ("inner_size", Int(min=1, doc="SASRec's feed-forward size")),
        "dropout": (("hidden_dropout_prob", "attn_dropout_prob"), Float(min=0, max=1, doc=(
            "SASRec's hidden and attention dropout"))),
    }
    if hidden_size:
        mapped["hidden_size"] = ("hidden_size", Int(min=1, doc="SASRec's hidden size (its item embedding size)"))
    return pretrain_stage(prefix, "SASRec", eval_step=False, mapped=mapped, fixed={
        "eval_step": 1, "loss_type": "CE", "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02})

"""Typed, validated model settings read from a RecBole ``Config``.

A model's defaults live in its YAML only (RecBole's rule); its :class:`Settings` schema says what
each key must be (type, range, choices) and nothing about defaults. ``Settings.read(config)``
validates every key once, when the model is built, and returns a read-only namespace::

    GLTA_SETTINGS = Settings("GLTA", prefix="glta_", keys={
        "glta_inference": Choice("first_k", "autoregressive", "first_logit"),
        "glta_ua_epochs": Int(min=0),
        "glta_ua_learning_rate": Float(gt=0),
    })
    s = GLTA_SETTINGS.read(config)      # s.inference, s.ua_epochs, s.ua_learning_rate

A missing key, a wrong type or a value out of range raises :class:`~recbole_llm.errors.ConfigError`
naming the key, the value and what is allowed. This module imports nothing heavy.
"""

from __future__ import annotations

from types import MappingProxyType

from recbole_llm.errors import ConfigError


class Spec:
    """What one setting must be. ``nullable``: ``~`` (None) is a valid value."""

    def __init__(self, nullable=False):
        self.nullable = nullable

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

    def __init__(self, min=None, max=None, gt=None, nullable=False):
        super().__init__(nullable)
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
    def __init__(self, nullable=False, non_empty=False):
        super().__init__(nullable)
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
    def __init__(self, *choices, nullable=False):
        super().__init__(nullable)
        self.choices = choices

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices)) + (" or ~" if self.nullable else "")

    def convert(self, value):
        if value not in self.choices:
            raise ValueError
        return value


class Settings:
    """The schema of one model's settings (keys, types, ranges, choices; never defaults)."""

    def __init__(self, model: str, keys: dict, prefix: str = "", yaml_hint: str | None = None):
        self.model = model
        self.prefix = prefix
        self.keys = dict(keys)
        self.yaml_hint = yaml_hint or f"properties/model/{model}.yaml"

    def attribute(self, key: str) -> str:
        return key[len(self.prefix):] if self.prefix and key.startswith(self.prefix) else key

    def read(self, config) -> "SettingsView":
        values = {}
        for key, spec in self.keys.items():
            present, value = _lookup(config, key)
            if not present:
                raise ConfigError(
                    f"{self.model} setting {key} is not set. Its default belongs in {self.yaml_hint} "
                    f"(the model's YAML, registered through register_property_files); set it there or pass --{key}=VALUE."
                )
            values[self.attribute(key)] = spec.check(key, value, self.model)
        return SettingsView(values)

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

    __slots__ = ("_values",)

    def __init__(self, values):
        object.__setattr__(self, "_values", MappingProxyType(dict(values)))

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

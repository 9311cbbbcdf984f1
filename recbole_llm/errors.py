"""Errors that describe bad input. The CLI prints their message (what is wrong, what to do)
without a traceback; every user-facing error in recbole-llm derives from ``RecBoleLLMError``."""


class RecBoleLLMError(Exception):
    """Base of recbole-llm's user-facing errors."""


class ConfigError(RecBoleLLMError, ValueError):
    """A setting is missing, has a wrong type or contradicts another."""

"""Errors that describe bad input. The CLI prints their message (what is wrong, where, what to do)
without a traceback and exits with code 2; every user-facing error in recbole-llm derives from
``RecBoleLLMError``. This module imports nothing heavy."""


class RecBoleLLMError(Exception):
    """Base of recbole-llm's user-facing errors."""


class ConfigError(RecBoleLLMError, ValueError):
    """A setting is missing, has a wrong type or range, or contradicts another."""


class DataFormatError(RecBoleLLMError, ValueError):
    """An atomic data file (or another input file) is malformed; the message names file and line."""


class MissingDependencyError(RecBoleLLMError, ImportError):
    """An optional library a model or feature needs is not installed; the message names the package."""


class CorruptFileError(RecBoleLLMError, OSError):
    """A cache, checkpoint or state file cannot be read; the message says how to start anew."""


class TrainingDataMismatchError(RecBoleLLMError, ValueError):
    """A reused artefact (checkpoint, cache) was built from other training interactions than this
    run's training split; using it would leak validation/test interactions or mix datasets."""


class ResumeSettingsError(ConfigError):
    """An unfinished run would be resumed under other result-affecting settings than it started
    with (the run would mix two configurations); the message names the keys and how to start anew."""


class UntrustedFileError(CorruptFileError):
    """A checkpoint or cache asks for objects outside what recbole-llm's files hold; loading it
    could run code, so it is refused unless the user says they trust it (``--trust_checkpoint``)."""


class TrainingDivergedError(RecBoleLLMError, ArithmeticError):
    """The training loss or the model's weights became NaN or infinite; metrics of such a model
    would be meaningless, so the run stops."""

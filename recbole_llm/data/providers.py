"""Dataset providers: how recbole-llm obtains a dataset that is not on disk.

``Config`` asks the provider registered under the dataset's name (hook ``register_datasets``)
to ``ensure`` the atomic files when ``<data_path>/<dataset>/<dataset>.inter`` is missing. The
built-in providers download the official raw files (resumable, checksum-verified where a
checksum is known), convert them with :mod:`atomic_data` and cache the result, because
RecBole's own download storage is gone (RecBole issue #2218) and MovieLens' licence forbids
redistributing converted copies.

Dataset names are lowercase with hyphens, like RecBole's ``ml-100k``: ``ml-1m``,
``amazon-beauty``, ``amazon-toys``, ``amazon-sports``, ``amazon-grocery``,
``goodreads-history``. The Amazon names deliberately differ from RecBole's ``Amazon_Beauty``
(the full ratings-only 2014 dump): these are the 5-core review subsets with metadata.
``ml-100k`` needs no provider: RecBole ships it.

A third-party plugin registers its own datasets the same way: return ``DatasetProvider``
objects (or subclasses overriding ``ensure``) from a ``register_datasets`` hook.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from recbole_llm.errors import RecBoleLLMError
from recbole_llm.hookspecs import hookimpl

logger = logging.getLogger(__name__)

#: Datasets provided by recbole-llm itself (``atomic_data`` specs with a download URL).
BUILTIN_DATASETS = ("ml-1m", "amazon-beauty", "amazon-toys", "amazon-sports", "amazon-grocery", "goodreads-history")


class DatasetUnavailableError(RecBoleLLMError, RuntimeError):
    """A dataset is not on disk and cannot be fetched; the message says what to do by hand."""


@dataclass
class DatasetProvider:
    """Knows how to make ``<data_root>/<name>/<name>.inter`` (and friends) exist.

    ``property_file`` holds the dataset's default settings (fields to load, item-text
    template); ``spec`` is the :class:`atomic_data.DatasetSpec` used by the default ``ensure``.
    Subclasses may override :meth:`ensure` to obtain data any other way.
    """

    name: str
    description: str
    property_file: str | None = None
    spec: object | None = field(default=None, repr=False)
    offline: bool | None = None  # None: follow RECBOLE_LLM_OFFLINE

    def dataset_dir(self, data_root: Path) -> Path:
        return Path(data_root) / self.name

    def is_ready(self, data_root: Path) -> bool:
        return (self.dataset_dir(data_root) / f"{self.name}.inter").is_file()

    def ensure(self, data_root: Path) -> Path:
        """Return ``data_root/<name>`` after making its atomic files exist (download + convert).

        Raises :class:`DatasetUnavailableError` naming every raw file to fetch by hand, where
        from and where to put it, when the network or the source is unavailable.
        """
        import atomic_data

        if self.spec is None:
            raise DatasetUnavailableError(f"Dataset provider {self.name!r} has no source to fetch from.")
        data_root = Path(data_root)
        if self.is_ready(data_root):
            return self.dataset_dir(data_root)
        logger.info("Dataset %s is not in %s: downloading and converting it.", self.name, data_root)
        try:
            return atomic_data.prepare(self.spec, data_root, offline=self.offline)
        except atomic_data.DownloadError as exc:
            raise DatasetUnavailableError(
                f"Dataset {self.name!r} is not in {self.dataset_dir(data_root)} and could not be downloaded.\n"
                f"{exc}\n"
                f"Or convert files you already have: python -m atomic_data convert {self.name} "
                f"--raw FILE... --out {data_root}"
            ) from exc


def _property_file(name: str) -> str | None:
    from recbole_llm.paths import properties_dir

    try:
        path = properties_dir() / "dataset" / f"{name}.yaml"
    except FileNotFoundError:
        return None
    return str(path) if path.is_file() else None


def builtin_providers() -> list[DatasetProvider]:
    """Providers for the datasets :mod:`atomic_data` can download."""
    import atomic_data

    specs = atomic_data.datasets()
    return [
        DatasetProvider(name=name, description=specs[name].description, property_file=_property_file(name), spec=specs[name])
        for name in BUILTIN_DATASETS
    ]


@hookimpl
def register_datasets():
    return builtin_providers()

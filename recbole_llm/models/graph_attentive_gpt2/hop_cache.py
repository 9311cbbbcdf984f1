"""GraphAttentiveGPT2's hop table, cached on disk by the training split's fingerprint and ``K``."""

from __future__ import annotations

import logging
from pathlib import Path

from recbole_llm.data.interactions import interaction_fingerprint
from recbole_llm.graph.hops import HopTable, hop_table
from recbole_llm.graph.interactions import interaction_matrix
from recbole_llm.paths import cache_dir
from recbole_llm.training.checkpoint import load_checked, save_atomic

logger = logging.getLogger(__name__)


def cached_hop_table(dataset, max_hops: int, use_cache: bool = True) -> HopTable:
    """The hop table of ``dataset`` (the training split RecBole hands a model), cached under
    ``cache_dir()/hops/<fingerprint>-K<max_hops>.pth`` and checked against the fingerprint on reuse."""
    fingerprint = interaction_fingerprint(dataset)
    path = Path(cache_dir()) / "hops" / f"{fingerprint[:20]}-K{int(max_hops)}.pth"
    if use_cache and path.is_file():
        blob = load_checked(path, "GraphAttentiveGPT2's hop table cache", f"Delete {path} to rebuild it.",
                            kind="cache")
        if isinstance(blob, dict) and blob.get("fingerprint") == fingerprint and int(blob.get("max_hops", -1)) == int(max_hops):
            return HopTable(blob["codes"], int(blob["n_users"]), int(blob["n_items"]), int(max_hops), fingerprint, 0.0)
        logger.warning("hop table cache %s belongs to another training split; rebuilding it", path)
    table = hop_table(interaction_matrix(dataset), max_hops, fingerprint)
    logger.info("hop table %dx%d (K=%d) built in %.2f s", table.codes.shape[0], table.codes.shape[1], max_hops,
                table.seconds)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic({"codes": table.codes, "n_users": table.n_users, "n_items": table.n_items,
                     "max_hops": int(max_hops), "fingerprint": fingerprint}, path)
    return table

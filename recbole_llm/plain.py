"""The one plainifier: a value as plain JSON-able data (dicts, lists, str, int, float, bool, None).

Its output is hashed and stored: staged run keys and pretraining cache keys (the defaults), the
benchmark store's JSON, the results a run's child process reports, suite run keys. Each of those
was written with its own conversion and must keep it byte for byte (a changed key orphans stored
results and refuses resumes), so where they differ the difference is a parameter here;
``tests/test_plain.py`` checks every caller's parameters against the conversion it replaced.
"""

from __future__ import annotations


def plain(value, *, numbers=False, fallback=str, sets=None, type_names=False, str_keys=True, sort_keys=True):
    """``value`` as plain data: lists for lists and tuples, dicts for dicts, scalars as they are.

    ``numbers``: a numpy or torch scalar (anything whose ``.item()`` works) becomes a Python number;
    otherwise it goes to ``fallback`` like any other value (``str`` or ``repr``). ``sets``: ``None``
    (to ``fallback``), ``"list"`` (iteration order) or ``"sorted"`` (by ``repr``). ``type_names``: a
    class as ``"module.qualname"``. ``str_keys``: dict keys as ``str(key)``; ``False`` keeps them
    for ``json.dumps`` to convert (``True`` -> ``"true"``) or refuse. ``sort_keys``: dicts in the
    order of ``str(key)``, else in insertion order."""

    def convert(v):
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, (list, tuple)):
            return [convert(x) for x in v]
        if isinstance(v, dict):
            items = sorted(v.items(), key=lambda kv: str(kv[0])) if sort_keys else v.items()
            return {(str(k) if str_keys else k): convert(x) for k, x in items}
        if type_names and isinstance(v, type):
            return f"{v.__module__}.{v.__qualname__}"
        if sets is not None and isinstance(v, (set, frozenset)):
            return [convert(x) for x in (sorted(v, key=repr) if sets == "sorted" else v)]
        if numbers and hasattr(v, "item"):
            try:
                return convert(v.item())
            except Exception:
                pass
        return fallback(v)

    if sets not in (None, "list", "sorted"):
        raise ValueError(f"plain(sets={sets!r}): use None, 'list' or 'sorted'")
    return convert(value)

"""Significance tests for benchmark tables.

Which test, and why
-------------------
The tables compare, per column (dataset x metric), the best of "our" models with the best
baseline. Each suite runs every model with the same list of seeds, and the seed fixes the
data split and the shuffling before any model is built (RecBole calls ``init_seed`` before
``create_dataset``), so run *s* of model A and run *s* of model B share their split: the
observations are **paired by seed**. We therefore use the **paired t-test** over seeds
(``scipy.stats.ttest_rel``, two-sided) on the per-seed test metric.

* Pairing removes the variance that comes from the split, which is usually larger than
  the difference between two good models; an unpaired (Welch) test would waste it.
* A metric averaged over hundreds or thousands of users is close to normally distributed
  from seed to seed, which is what the t-test assumes of the differences.
* The Wilcoxon signed-rank test needs no normality but cannot reach p < 0.05 with fewer
  than 6 pairs (its smallest two-sided exact p-value is ``2 / 2**n``: 0.25 for 3 seeds,
  0.0625 for 5), so with the 3-5 seeds that LLM recommenders can afford it could never mark
  anything. :func:`wilcoxon` is provided for callers with >= 6 pairs; the tables do not report it.

Over users. A test metric is an average over users, and every user of a split is scored by both
models, so the users give many more pairs than the seeds: :func:`wilcoxon_users` runs the
Wilcoxon signed-rank test (``scipy.stats.wilcoxon``, two-sided, normal approximation for many
users) on each user's test metric (averaged over the seeds both rows finished). It needs no
normality, which matters because per-user NDCG/Recall are mostly zeros.

Several rows against one reference row make several tests per column: :func:`holm` adjusts their
p-values (Holm's step-down method), so a marked row stays significant at the family-wise level.

Caveat printed under every table: with 3-5 seeds the t-test has little power (2-4 degrees
of freedom); "not significant" means "not shown", not "no difference", and several columns
are tested without correction for multiple comparisons.
"""

import math

TEST_NAME = "paired t-test over seeds (two-sided)"
USER_TEST_NAME = "paired Wilcoxon signed-rank test over users (two-sided)"


def _pairs(a, b):
    """Accept two dicts {seed: value} (paired on common seeds) or two equal-length lists."""
    if isinstance(a, dict) and isinstance(b, dict):
        seeds = sorted(set(a) & set(b))
        return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds], seeds
    a, b = [float(x) for x in a], [float(x) for x in b]
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal-length samples, got {len(a)} and {len(b)}")
    return a, b, list(range(len(a)))


def paired_ttest(a, b):
    """Paired two-sided t-test of ``a`` against ``b``.

    ``a`` and ``b`` are ``{seed: value}`` dicts (paired on their common seeds) or equal-length
    sequences. Returns a dict with ``test``, ``n``, ``mean_diff`` (a - b), ``t``, ``p`` and
    ``note``; ``p`` is ``nan`` when the test is undefined (fewer than 2 pairs, or all
    differences equal).
    """
    xa, xb, seeds = _pairs(a, b)
    n = len(xa)
    out = {"test": "paired t-test", "n": n, "seeds": seeds, "mean_diff": float("nan"),
           "t": float("nan"), "p": float("nan"), "note": ""}
    if n == 0:
        out["note"] = "no common seeds"
        return out
    diffs = [x - y for x, y in zip(xa, xb)]
    out["mean_diff"] = sum(diffs) / n
    if n < 2:
        out["note"] = "needs at least 2 seeds"
        return out
    if max(diffs) - min(diffs) <= 1e-15 * max(1.0, max(abs(d) for d in diffs)):
        out["note"] = "all differences equal (zero variance); t undefined"
        return out
    from scipy import stats

    res = stats.ttest_rel(xa, xb)
    out["t"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def wilcoxon(a, b):
    """Wilcoxon signed-rank test (exact, two-sided); ``p`` is nan with fewer than 6 pairs,
    where p < 0.05 is impossible."""
    xa, xb, seeds = _pairs(a, b)
    n = len(xa)
    out = {"test": "Wilcoxon signed-rank", "n": n, "seeds": seeds, "p": float("nan"), "note": ""}
    if n < 6:
        out["note"] = f"needs >= 6 pairs to reach p < 0.05 (min p = {2 / 2 ** n if n else 1:.3g})"
        return out
    diffs = [x - y for x, y in zip(xa, xb)]
    if all(d == 0 for d in diffs):
        out["p"], out["note"] = 1.0, "all differences zero"
        return out
    from scipy import stats

    res = stats.wilcoxon(xa, xb)
    out["p"] = float(res.pvalue)
    return out


def stars(p):
    """``**`` for p < 0.01, ``*`` for p < 0.05, else ``""`` (also for nan)."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return ""
    if p < 0.01:
        return "**"
    if p < 0.05:
        return "*"
    return ""


def mean_std(values):
    """Mean and sample standard deviation (ddof=1; ``nan`` for a single value)."""
    values = [float(v) for v in values]
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    m = sum(values) / n
    if n < 2:
        return m, float("nan")
    var = sum((v - m) ** 2 for v in values) / (n - 1)
    return m, math.sqrt(var)


def wilcoxon_users(a, b):
    """Paired two-sided Wilcoxon signed-rank test over users.

    ``a`` and ``b`` map a user to its test metric (e.g. averaged over seeds); the test runs on
    the users both hold (in sorted order). Returns ``test``, ``n``, ``mean_diff`` (a - b),
    ``statistic``, ``p`` and ``note``; ``p`` is 1.0 when every difference is zero and nan with
    no common user.
    """
    users = sorted(set(a) & set(b))
    xa, xb = [float(a[u]) for u in users], [float(b[u]) for u in users]
    n = len(users)
    out = {"test": "Wilcoxon signed-rank over users", "n": n, "mean_diff": float("nan"),
           "statistic": float("nan"), "p": float("nan"), "note": ""}
    if n == 0:
        out["note"] = "no common users"
        return out
    out["mean_diff"] = sum(x - y for x, y in zip(xa, xb)) / n
    if all(x == y for x, y in zip(xa, xb)):
        out["p"], out["note"] = 1.0, "all differences zero"
        return out
    from scipy import stats

    res = stats.wilcoxon(xa, xb)
    out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def holm(pvalues):
    """Holm-adjusted p-values, in the input order; nan entries stay nan and do not count.

    The i-th smallest of the m p-values becomes ``max_{j <= i} min(1, (m - j + 1) p_(j))``.
    """
    ps = [float(p) if p is not None else float("nan") for p in pvalues]
    idx = sorted((i for i, p in enumerate(ps) if not math.isnan(p)), key=lambda i: ps[i])
    m = len(idx)
    out = [float("nan")] * len(ps)
    running = 0.0
    for rank, i in enumerate(idx):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        out[i] = running
    return out

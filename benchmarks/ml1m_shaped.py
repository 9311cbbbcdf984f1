"""A generated dataset shaped like MovieLens-1M, written as RecBole atomic files (``ml-1m.inter``,
``ml-1m.item``), for the scale benchmark (``benchmarks/glta_scale.py``): MovieLens itself may not be
committed, so the benchmark runs on this when the real ``ml-1m`` is not on the machine.

Shape (the ml-1m README's counts): 6,040 users, 3,706 rated items, 1,000,209 ratings on a 1-5 scale with
Unix timestamps (April 2000 - February 2003), every user with at least 20 ratings; items carry a title, a
release year and 1-3 of ml-1m's 18 genres. What makes the metrics mean something is planted structure:

* every item has a latent vector made of its genres plus a free part, every user a preference vector that
  concentrates on a few genres (Dirichlet) plus a free part;
* a user's items are drawn without replacement with probability proportional to
  ``popularity_i * exp(affinity(u, i) / temperature)``, popularity log-normal (a long tail: a few hundred
  items take most ratings, as in ml-1m), user activity a shifted log-normal (median near ml-1m's ~96);
* ratings grow with the affinity (plus noise), and a user's timestamps follow a slow drift of the
  preference, so random and temporal splits both hold signal.

Everything comes from one ``numpy`` generator seeded with ``seed``: same seed, same files.

    python3 benchmarks/ml1m_shaped.py --out benchmarks/data/synthetic-s0 [--seed 0] [--users 604]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

N_USERS, N_ITEMS, N_RATINGS = 6040, 3706, 1_000_209
MIN_PER_USER = 20
T_START, T_END = 956_703_932, 1_046_454_590  # ml-1m's first and last timestamps
GENRES = ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
          "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western"]
# how often each genre is listed on an ml-1m movie (rounded shares), so genre frequencies look alike
GENRE_WEIGHT = [503, 283, 105, 251, 1200, 211, 127, 1603, 68, 44, 343, 114, 106, 471, 276, 492, 143, 68]
_ADJ = ["Silent", "Last", "Golden", "Broken", "Hidden", "Wild", "Lost", "Dark", "Bright", "Crimson", "Frozen",
        "Endless", "Secret", "Burning", "Quiet", "Little", "Great", "Lonely", "Strange", "Distant", "Iron", "Velvet",
        "Savage", "Sweet", "Midnight", "Electric", "Forgotten", "Perfect", "Hollow", "Restless"]
_NOUN = ["River", "Summer", "Kingdom", "Stranger", "Garden", "Road", "Heart", "City", "Island", "Mirror", "Storm",
         "Promise", "Shadow", "Horizon", "Harbor", "Station", "Letter", "Voyage", "Empire", "Witness", "Dream",
         "Frontier", "Machine", "Circus", "Valley", "Orchard", "Signal", "Tide", "Crown", "Ghost"]
_FORMS = ["The {a} {n}", "{a} {n}", "A {a} {n}", "Return of the {a} {n}", "The {n} of {n2}", "{n} and {n2}",
          "Beyond the {n}", "The {a} {n} II", "Night of the {a} {n}", "{a} {n}, The"]


def _titles(rng, n):
    seen, out = set(), []
    while len(out) < n:
        form = _FORMS[rng.integers(len(_FORMS))]
        title = form.format(a=_ADJ[rng.integers(len(_ADJ))], n=_NOUN[rng.integers(len(_NOUN))],
                            n2=_NOUN[rng.integers(len(_NOUN))])
        if title in seen:  # ml-1m titles are unique with their year; keep ours unique outright
            continue
        seen.add(title)
        out.append(title)
    return out


def generate(seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS, n_ratings: int = N_RATINGS):
    """``(inter, items)``: ``inter`` a dict of arrays ``user, item, rating, timestamp`` (ids from 1, users in
    order, each user's rows in time order), ``items`` a list of ``(item id, title, year, [genres])``. The
    sizes default to ml-1m's; smaller ones are for tests."""
    if n_ratings < MIN_PER_USER * n_users or n_ratings > int(0.6 * n_items) * n_users:
        raise ValueError(f"{n_ratings} ratings cannot give {n_users} users between {MIN_PER_USER} and "
                         f"{int(0.6 * n_items)} items each")
    rng = np.random.default_rng(seed)
    n_g, d_free = len(GENRES), 16

    # items: 1-3 genres, popularity (log-normal long tail), year skewed to the 1990s, latent vector
    gp = np.asarray(GENRE_WEIGHT, float) / sum(GENRE_WEIGHT)
    item_genres = np.zeros((n_items, n_g))
    n_genres = rng.choice([1, 2, 3], size=n_items, p=[0.5, 0.35, 0.15])
    for i in range(n_items):
        item_genres[i, rng.choice(n_g, size=n_genres[i], replace=False, p=gp)] = 1.0
    popularity = rng.lognormal(mean=0.0, sigma=1.5, size=n_items)
    years = np.clip(np.round(2000 - rng.gamma(shape=1.3, scale=9.0, size=n_items)), 1919, 2000).astype(int)
    item_free = rng.normal(size=(n_items, d_free)) / np.sqrt(d_free)
    item_vec = np.concatenate([item_genres / np.sqrt(n_genres)[:, None], item_free], axis=1)

    # users: activity (shifted log-normal scaled to the total), genre taste, free taste, drift direction
    raw = rng.lognormal(mean=4.0, sigma=1.05, size=n_users)
    counts = MIN_PER_USER + np.floor(raw / raw.sum() * (n_ratings - MIN_PER_USER * n_users)).astype(int)
    cap = int(0.6 * n_items)
    counts = np.minimum(counts, cap)
    short = n_ratings - counts.sum()
    while short > 0:  # hand the rounding remainder to users below the cap, most active first
        room = np.flatnonzero(counts < cap)
        take = room[np.argsort(-counts[room])][:short]
        counts[take] += 1
        short = n_ratings - counts.sum()
    taste_g = rng.dirichlet(np.full(n_g, 0.3), size=n_users) * 6.0
    taste_f = rng.normal(size=(n_users, d_free)) / np.sqrt(d_free) * 2.0
    drift = rng.normal(size=(n_users, d_free)) / np.sqrt(d_free)
    log_pop = np.log(popularity)

    users, items_out, ratings, stamps = [], [], [], []
    for u in range(n_users):
        taste = np.concatenate([taste_g[u], taste_f[u]])
        affinity = item_vec @ taste
        logits = log_pop + 1.5 * affinity
        p = np.exp(logits - logits.max())
        p /= p.sum()
        chosen = rng.choice(n_items, size=counts[u], replace=False, p=p)
        # time: a user is active for a short span (most ml-1m users rate within days), a few for years
        start = rng.uniform(T_START, T_END - 86_400)
        span = min(T_END - start, rng.exponential(30 * 86_400) if rng.random() < 0.7 else rng.exponential(300 * 86_400))
        # drift: items closer to the user's drift direction come later
        order_key = item_free[chosen] @ drift[u] + rng.normal(scale=0.5, size=len(chosen))
        chosen = chosen[np.argsort(order_key)]
        t = np.sort(start + rng.uniform(0, max(span, 60.0), size=len(chosen))).astype(np.int64)
        score = affinity[chosen]
        z = (score - score.mean()) / (score.std() + 1e-9)
        r = np.clip(np.round(3.6 + 0.8 * z + rng.normal(scale=0.8, size=len(chosen))), 1, 5).astype(int)
        users.append(np.full(len(chosen), u + 1))
        items_out.append(chosen + 1)
        ratings.append(r)
        stamps.append(t)
    inter = {"user": np.concatenate(users), "item": np.concatenate(items_out), "rating": np.concatenate(ratings),
             "timestamp": np.concatenate(stamps)}
    titles = _titles(rng, n_items)
    items = [(i + 1, titles[i], str(years[i]), [GENRES[g] for g in np.flatnonzero(item_genres[i])])
             for i in range(n_items)]
    return inter, items


def select_users(inter, n_users: int | None, seed: int = 0):
    """Rows of ``inter`` for ``n_users`` users drawn at random (all when ``None``)."""
    if n_users is None:
        return inter
    all_users = np.unique(inter["user"])
    if not 1 <= n_users <= len(all_users):
        raise ValueError(f"--users must be between 1 and {len(all_users)}, got {n_users}")
    keep = np.random.default_rng(seed + 1).choice(all_users, size=n_users, replace=False)
    mask = np.isin(inter["user"], keep)
    return {k: v[mask] for k, v in inter.items()}


def write_atomic(inter, items, out_dir: Path, name: str = "ml-1m") -> dict:
    """``out_dir/<name>/<name>.inter`` and ``.item`` in the layout of ``atomic_data/movielens.py``."""
    from atomic_data import AtomicWriter
    from atomic_data.movielens import INTER_FIELDS, ITEM_FIELDS

    folder = Path(out_dir) / name
    used = set(np.unique(inter["item"]).tolist())
    with AtomicWriter(folder / f"{name}.item", ITEM_FIELDS) as fh:
        for item_id, title, year, genres in items:
            if item_id in used:
                fh.write([str(item_id), title, year, genres])
    with AtomicWriter(folder / f"{name}.inter", INTER_FIELDS) as fh:
        for row in zip(inter["user"].tolist(), inter["item"].tolist(), inter["rating"].tolist(),
                       inter["timestamp"].tolist()):
            fh.write([str(row[0]), str(row[1]), float(row[2]), float(row[3])])
    return {"users": int(len(np.unique(inter["user"]))), "items": len(used), "ratings": int(len(inter["user"]))}


def describe(inter) -> dict:
    """Counts and shape statistics (per-user and per-item rating counts), for the benchmark's report."""
    _, per_user = np.unique(inter["user"], return_counts=True)
    _, per_item = np.unique(inter["item"], return_counts=True)
    top = np.sort(per_item)[::-1]
    return {"users": int(len(per_user)), "items": int(len(per_item)), "ratings": int(len(inter["user"])),
            "ratings_per_user": {"min": int(per_user.min()), "median": float(np.median(per_user)),
                                 "max": int(per_user.max())},
            "ratings_per_item": {"min": int(per_item.min()), "median": float(np.median(per_item)),
                                 "max": int(per_item.max())},
            "top10pct_items_share": float(top[: max(1, len(top) // 10)].sum() / top.sum()),
            "mean_rating": float(inter["rating"].mean())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder that receives ml-1m/ml-1m.inter and ml-1m/ml-1m.item")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--users", type=int, default=None, help="keep this many users (drawn at random)")
    args = ap.parse_args(argv)
    inter, items = generate(args.seed)
    try:
        inter = select_users(inter, args.users, args.seed)
    except ValueError as exc:
        print(f"ml1m_shaped: {exc}", file=sys.stderr)
        return 2
    print(write_atomic(inter, items, Path(args.out)), describe(inter))
    return 0


if __name__ == "__main__":
    sys.exit(main())

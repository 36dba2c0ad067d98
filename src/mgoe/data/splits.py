"""Leakage-free splits and negative sampling, vectorised over all interactions.

Split codes are ``0 = train, 1 = valid, 2 = test`` (``SPLIT_CODES``).
"""

from __future__ import annotations

import numpy as np

from mgoe.errors import MgoeError

SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
SPLIT_NAMES = ("train", "valid", "test")


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise MgoeError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")


def time_split(
    timestamps: np.ndarray, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> np.ndarray:
    """Split by global time quantiles (MacGNN protocol): train before the 80% quantile, valid
    before the 90% quantile, test after. Rows sharing a timestamp always share a split, so
    nothing in a later split happens before something in an earlier one.
    """
    _check_fractions(fractions)
    ts = np.asarray(timestamps)
    if ts.size == 0:
        return np.zeros(0, dtype=np.int8)
    q_valid, q_test = np.quantile(ts, [fractions[0], fractions[0] + fractions[1]], method="lower")
    codes = np.zeros(ts.shape, dtype=np.int8)
    if fractions[1] > 0 or fractions[2] > 0:
        codes[ts > q_valid] = 1
    if fractions[2] > 0:
        codes[ts > q_test] = 2
    return codes


def per_user_random_split(
    users: np.ndarray,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
) -> np.ndarray:
    """Deterministic per-user random split.

    Each user's rows are shuffled (seeded); of a user's ``n`` rows, ``round(n * f_test)`` go to
    test and ``round(n * f_valid)`` to valid, at least one each when ``n >= 3`` (and the
    fraction is non-zero); the rest, at least one, to train. Users with fewer than 3 rows are
    train only, so every user in valid/test also has training history.
    """
    _check_fractions(fractions)
    users = np.asarray(users)
    n_rows = users.size
    if n_rows == 0:
        return np.zeros(0, dtype=np.int8)
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(n_rows), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    counts = np.diff(np.r_[starts, n_rows])
    rank = np.arange(n_rows) - np.repeat(starts, counts)
    n = np.repeat(counts, counts)
    big = n >= 3
    n_test = np.where(big, np.maximum(np.rint(n * fractions[2]), fractions[2] > 0), 0)
    n_valid = np.where(big, np.maximum(np.rint(n * fractions[1]), fractions[1] > 0), 0)
    codes_sorted = np.zeros(n_rows, dtype=np.int8)
    codes_sorted[rank < n_test + n_valid] = 1
    codes_sorted[rank < n_test] = 2
    codes = np.empty(n_rows, dtype=np.int8)
    codes[order] = codes_sorted
    return codes


def pair_keys(users: np.ndarray, items: np.ndarray, num_items: int) -> np.ndarray:
    return np.asarray(users, dtype=np.int64) * np.int64(num_items) + np.asarray(items, dtype=np.int64)


def sample_negatives(
    pos_users: np.ndarray,
    num_items: int,
    per_positive: int,
    exclude_keys: np.ndarray,
    method: str = "uniform",
    item_popularity: np.ndarray | None = None,
    seed: int = 0,
    max_rounds: int = 50,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``per_positive`` negative items for every entry of ``pos_users``.

    A negative is never one of the user's positives: ``exclude_keys`` holds the sorted unique
    pair keys ``user * num_items + item`` of every positive pair (all splits, all tasks).
    Collisions are redrawn in vectorised rounds. ``method`` is ``uniform`` or ``popularity``
    (items drawn proportionally to ``item_popularity``). Returns ``(users, items, source)``:
    the negatives in the order of ``pos_users`` and, for each, the index of its positive in
    ``pos_users``. Draws that still collide after ``max_rounds`` (users who interacted with
    nearly every item) are dropped.
    """
    if method not in ("uniform", "popularity"):
        raise MgoeError(f"unknown negative sampling method {method!r}; use uniform or popularity")
    if per_positive <= 0 or len(pos_users) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    rng = np.random.default_rng(seed)
    source = np.repeat(np.arange(len(pos_users), dtype=np.int64), per_positive)
    users = np.asarray(pos_users, dtype=np.int64)[source]
    if method == "popularity":
        if item_popularity is None:
            raise MgoeError("popularity negative sampling needs item popularity counts")
        p = np.asarray(item_popularity, dtype=np.float64)
        cdf = np.cumsum(p / p.sum())

        def draw(k: int) -> np.ndarray:
            return np.minimum(np.searchsorted(cdf, rng.random(k), side="right"), num_items - 1)
    else:

        def draw(k: int) -> np.ndarray:
            return rng.integers(0, num_items, size=k)

    items = draw(users.size)
    exclude_keys = np.asarray(exclude_keys, dtype=np.int64)
    todo = np.arange(users.size)
    for _ in range(max_rounds):
        keys = users[todo] * np.int64(num_items) + items[todo]
        pos = np.searchsorted(exclude_keys, keys)
        pos = np.minimum(pos, max(exclude_keys.size - 1, 0))
        clash = exclude_keys.size > 0
        clash = (exclude_keys[pos] == keys) if clash else np.zeros(keys.size, bool)
        todo = todo[clash]
        if todo.size == 0:
            break
        items[todo] = draw(todo.size)
    keep = np.ones(users.size, bool)
    keep[todo] = False
    return users[keep], items[keep], source[keep]

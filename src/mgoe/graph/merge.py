"""Macro Task Merging Graph (MTMG): one preference score per (user, item) from its task labels.

For a pair with task labels ``y ∈ {0,1}^T`` (tasks in funnel order, most important last), the
combination ``C = {t : y_t = 1}`` gets a rank ``ρ(C)``; ``ρ(∅) = 0``. The merging preference
score is the Box-Cox transform of the rank (MGOE paper, Eq. 6)::

    s = ((ρ + 1)^β − 1) / β      for β ≠ 0
    s = ln(ρ + 1)                for β = 0

Default ranking [ours]: the combination's bit mask with task ``t`` (0-based, funnel order) as
bit ``2^t`` — any combination containing a deeper task outranks every one without it. An
explicit ranking table ``{combination: rank}`` may replace it, with combinations written as
``"buy"``, ``"cart+buy"`` (task names joined by ``+``) and ranks in ``1 .. 2^T − 1``.
"""

from __future__ import annotations

import numpy as np

from mgoe.errors import MgoeError


def label_masks(labels: np.ndarray) -> np.ndarray:
    """Bit masks of label rows: ``labels [N, T]`` (0/1) → ``int64 [N]``, task t = bit 2^t."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError("labels must be [N, T]")
    weights = np.int64(1) << np.arange(labels.shape[1], dtype=np.int64)
    return (labels.astype(np.int64) * weights).sum(axis=1)


def rank_table(tasks: list[str], ranking: dict[str, int] | None = None) -> np.ndarray:
    """``int64 [2^T]``: the rank ρ of every bit mask (index 0 = empty combination → 0).

    With ``ranking`` None the rank is the mask itself. Otherwise ``ranking`` must give every
    non-empty combination a distinct rank in ``1 .. 2^T − 1``.
    """
    n_masks = 1 << len(tasks)
    if ranking is None:
        return np.arange(n_masks, dtype=np.int64)
    table = np.zeros(n_masks, dtype=np.int64)
    seen = np.zeros(n_masks, dtype=bool)
    for combo, rank in ranking.items():
        names = [n.strip() for n in str(combo).split("+") if n.strip()]
        unknown = [n for n in names if n not in tasks]
        if unknown or not names:
            raise MgoeError(f"ranking table: unknown task(s) {unknown or combo!r} in {combo!r}; tasks are {tasks}")
        mask = sum(1 << tasks.index(n) for n in set(names))
        if seen[mask]:
            raise MgoeError(f"ranking table: combination {combo!r} listed twice")
        if not 1 <= int(rank) < n_masks:
            raise MgoeError(f"ranking table: rank {rank} of {combo!r} outside 1..{n_masks - 1}")
        table[mask] = int(rank)
        seen[mask] = True
    missing = np.flatnonzero(~seen[1:]) + 1
    if missing.size:
        names = "+".join(t for k, t in enumerate(tasks) if missing[0] >> k & 1)
        raise MgoeError(f"ranking table: combination {names!r} has no rank (all {n_masks - 1} needed)")
    if np.unique(table[1:]).size != n_masks - 1:
        raise MgoeError("ranking table: ranks must be distinct")
    return table


def boxcox_score(rank: np.ndarray, beta: float) -> np.ndarray:
    """Box-Cox transform of ``rank + 1`` (Eq. 6); 0 for rank 0. Returns float64."""
    r = np.asarray(rank, dtype=np.float64) + 1.0
    if beta == 0:
        return np.log(r)
    return (np.power(r, beta) - 1.0) / beta


def merge_scores(
    labels: np.ndarray, tasks: list[str], beta: float = 0.5, ranking: dict[str, int] | None = None
) -> np.ndarray:
    """Merged-graph weights ``s [N]`` (float32) of label rows ``[N, T]``."""
    table = rank_table(tasks, ranking)
    return boxcox_score(table[label_masks(labels)], beta).astype(np.float32)


def score_table(tasks: list[str], beta: float = 0.5, ranking: dict[str, int] | None = None) -> np.ndarray:
    """``float32 [2^T]``: the merged score of every bit mask (for SQL/Spark engines to join)."""
    return boxcox_score(rank_table(tasks, ranking), beta).astype(np.float32)

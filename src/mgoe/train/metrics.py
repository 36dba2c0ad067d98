"""Ranking and calibration metrics per task, vectorised with numpy (METHOD.md §6).

* :func:`auc` — ROC AUC from ranks (ties get the average rank), equal to scikit-learn's
  ``roc_auc_score``; NaN when the labels hold only one class.
* :func:`gauc` — per-user AUC weighted by the user's number of samples, over the users whose
  labels hold both classes; computed for all users at once from ranks within user groups (one
  sort, no loop over users); NaN when no user qualifies.
* :func:`logloss` — mean binary cross-entropy with probabilities clipped to ``[eps, 1 − eps]``.
* :func:`evaluate_tasks` — all three for every task; an undefined AUC/GAUC is reported as
  ``None`` (JSON-friendly), never NaN.

Labels are 0/1 (any value > 0.5 counts as positive).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def _as_1d(values: np.ndarray | Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _average_ranks_sorted(keys_equal_next: np.ndarray, n: int) -> np.ndarray:
    """1-based ranks of ``n`` sorted values where tied runs share their average rank.

    ``keys_equal_next[j]`` says whether sorted element ``j + 1`` ties with element ``j``.
    """
    starts = np.flatnonzero(np.concatenate(([True], ~keys_equal_next)))
    ends = np.concatenate((starts[1:], [n]))  # exclusive
    run_rank = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    return np.repeat(run_rank, ends - starts)


def auc(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float]) -> float:
    """ROC AUC (Mann–Whitney U with average ranks for ties); NaN if only one class."""
    y = _as_1d(labels, "labels") > 0.5
    s = _as_1d(scores, "scores").astype(np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in length: {y.shape[0]} vs {s.shape[0]}")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        return math.nan
    order = np.argsort(s, kind="mergesort")
    sorted_scores = s[order]
    ranks = _average_ranks_sorted(sorted_scores[1:] == sorted_scores[:-1], s.size)
    rank_sum = ranks[y[order]].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def gauc(labels: np.ndarray | Sequence[float], scores: np.ndarray | Sequence[float],
         users: np.ndarray | Sequence[int]) -> float:
    """Group AUC: ``Σ_u n_u · AUC_u / Σ_u n_u`` over users with both classes; NaN if none.

    ``n_u`` is the user's number of samples (all of them, positives and negatives). Ranks are
    taken within each user after one lexicographic sort by (user, score), ties averaged.
    """
    y = _as_1d(labels, "labels") > 0.5
    s = _as_1d(scores, "scores").astype(np.float64)
    u = _as_1d(users, "users")
    if not (y.shape == s.shape == u.shape):
        raise ValueError(
            f"labels, scores and users differ in length: {y.size}, {s.size}, {u.size}")
    if y.size == 0:
        return math.nan
    order = np.lexsort((s, u))  # by user, then score
    su, ss, sy = u[order], s[order], y[order]
    same_user = su[1:] == su[:-1]
    global_ranks = _average_ranks_sorted(same_user & (ss[1:] == ss[:-1]), y.size)
    group_start = np.flatnonzero(np.concatenate(([True], ~same_user)))
    group_size = np.diff(np.concatenate((group_start, [y.size])))
    group_of = np.repeat(np.arange(group_start.size), group_size)
    # Ranks within the group = global rank − number of elements before the group.
    ranks = global_ranks - group_start[group_of]
    positives = np.bincount(group_of, weights=sy, minlength=group_start.size)
    negatives = group_size - positives
    positive_rank_sum = np.bincount(group_of, weights=ranks * sy, minlength=group_start.size)
    valid = (positives > 0) & (negatives > 0)
    if not valid.any():
        return math.nan
    p, n = positives[valid], negatives[valid]
    per_user = (positive_rank_sum[valid] - p * (p + 1) / 2.0) / (p * n)
    weights = group_size[valid]
    return float((per_user * weights).sum() / weights.sum())


def logloss(labels: np.ndarray | Sequence[float], probs: np.ndarray | Sequence[float],
            eps: float = 1e-7) -> float:
    """Mean binary cross-entropy ``−mean(y log p + (1 − y) log(1 − p))``, ``p`` clipped to
    ``[eps, 1 − eps]``; NaN for no samples."""
    y = (_as_1d(labels, "labels") > 0.5).astype(np.float64)
    p = np.clip(_as_1d(probs, "probs").astype(np.float64), eps, 1.0 - eps)
    if y.shape != p.shape:
        raise ValueError(f"labels and probs differ in length: {y.shape[0]} vs {p.shape[0]}")
    if y.size == 0:
        return math.nan
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def evaluate_tasks(labels: np.ndarray, probs: np.ndarray, users: np.ndarray,
                   tasks: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``{task: {"auc", "gauc", "logloss"}}`` for ``labels``/``probs`` ``[N, T]``, ``users [N]``.

    A metric that is undefined (a task whose labels hold one class: AUC; no user with both
    classes: GAUC; no samples) is ``None``.
    """
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    if labels.ndim != 2 or labels.shape != probs.shape or labels.shape[1] != len(tasks):
        raise ValueError(
            f"labels {labels.shape} and probs {probs.shape} must both be [N, T] with "
            f"T = {len(tasks)} tasks"
        )
    results: dict[str, dict[str, float | None]] = {}
    for column, task in enumerate(tasks):
        y, p = labels[:, column], probs[:, column]
        results[task] = {
            "auc": _none_if_nan(auc(y, p)),
            "gauc": _none_if_nan(gauc(y, p, users)),
            "logloss": _none_if_nan(logloss(y, p)),
        }
    return results

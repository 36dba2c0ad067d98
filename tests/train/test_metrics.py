"""Metrics against scikit-learn and a brute-force per-user loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from mgoe.train.metrics import auc, evaluate_tasks, gauc, logloss


def _tied_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = np.round(rng.random(n) + 0.3 * labels, 1)  # rounding makes many ties
    users = rng.integers(0, 40, n)
    return labels, scores, users


@pytest.mark.parametrize("seed", range(5))
def test_auc_equals_sklearn_with_ties(seed: int) -> None:
    labels, scores, _ = _tied_data(500, seed)
    assert len(np.unique(scores)) < 30
    assert auc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auc_edge_cases() -> None:
    assert auc([0, 1], [0.2, 0.9]) == 1.0
    assert auc([0, 1], [0.9, 0.2]) == 0.0
    assert auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert math.isnan(auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(auc([], []))


def _gauc_loop(labels: np.ndarray, scores: np.ndarray, users: np.ndarray) -> float:
    total, weight = 0.0, 0
    for user in np.unique(users):
        rows = users == user
        if labels[rows].min() == labels[rows].max():
            continue
        total += rows.sum() * roc_auc_score(labels[rows], scores[rows])
        weight += rows.sum()
    return total / weight


@pytest.mark.parametrize("seed", range(5))
def test_gauc_equals_per_user_loop(seed: int) -> None:
    labels, scores, users = _tied_data(600, seed)
    users = users * 7919 % 1000  # non-contiguous user ids
    assert gauc(labels, scores, users) == pytest.approx(_gauc_loop(labels, scores, users),
                                                        abs=1e-12)


def test_gauc_skips_single_class_users_and_weights_by_count() -> None:
    labels = np.array([1, 0, 0, 1, 1, 1, 0])
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.8, 0.4])
    users = np.array([5, 5, 5, 7, 7, 9, 9])  # user 7 has only positives
    # user 5: AUC 1 over 3 samples; user 9: AUC 1 over 2 samples.
    assert gauc(labels, scores, users) == pytest.approx(1.0)
    scores[5] = 0.1  # user 9 now ranks its positive last: AUC 0
    assert gauc(labels, scores, users) == pytest.approx(3 / 5)
    assert math.isnan(gauc([1, 0], [0.3, 0.4], [1, 2]))


def test_logloss_equals_sklearn() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = rng.uniform(0.01, 0.99, 300)
    assert logloss(labels, probs) == pytest.approx(log_loss(labels, probs), rel=1e-12)
    # Clipping keeps certain mistakes finite.
    assert logloss([1, 0], [0.0, 1.0]) == pytest.approx(-math.log(1e-7), rel=1e-6)


def test_evaluate_tasks_per_task_and_none_for_undefined() -> None:
    labels, scores, users = _tied_data(400, 1)
    probs = np.clip(scores / 1.5, 0.01, 0.99)
    all_labels = np.stack([labels, np.zeros_like(labels)], axis=1)
    all_probs = np.stack([probs, probs], axis=1)
    result = evaluate_tasks(all_labels, all_probs, users, ["click", "buy"])
    assert set(result) == {"click", "buy"}
    assert result["click"]["auc"] == pytest.approx(roc_auc_score(labels, probs))
    assert result["click"]["gauc"] == pytest.approx(_gauc_loop(labels, probs, users))
    assert result["click"]["logloss"] == pytest.approx(log_loss(labels, probs))
    assert result["buy"]["auc"] is None and result["buy"]["gauc"] is None
    assert result["buy"]["logloss"] == pytest.approx(log_loss(np.zeros(400), probs, labels=[0, 1]))
    with pytest.raises(ValueError):
        evaluate_tasks(all_labels, all_probs, users, ["click"])

"""Preference-based grouping: users and items into macro nodes (METHOD.md §3).

The paper clusters users by ``S Sᵀ`` and items by ``Sᵀ S``. Neither can be materialised at
scale, so [ours] every node gets a spectral embedding of the degree-normalised merged graph

    Ŝ = D_U^{-1/2} S D_I^{-1/2},   Ŝ ≈ U_k Σ_k V_kᵀ   (randomised truncated SVD, Halko et al.)
    user embedding = rowwise-L2-normalised(U_k Σ_k),   item embedding = ... (V_k Σ_k)

whose inner products approximate ``Ŝ Ŝᵀ`` (resp. ``ŜᵀŜ``). Computed as row projections onto the
other side's basis, ``U_k Σ_k = Ŝ V_k``: the user embedding is ``normalise(Σ_j s_uj d_j^{-1/2} V_j)``
(the user's own degree cancels in the normalisation), so removing one edge ``(u, i)`` moves it
to ``normalise(y_u − s_ui d_i^{-1/2} V_i)`` exactly — the leave-one-out macro assignment. Node weight
``w_v = min(1, strength_v / θ)`` with ``θ`` a quantile of the strengths ``Σ_j s_vj`` (default the
median), and weighted mini-batch k-means gives the macro nodes. Nodes without history go to the
reserved cold node, index ``K`` (the last).

The SVD only needs ``Ŝ X`` and ``Ŝᵀ Y`` products, passed in as functions, so the in-memory
engine (scipy.sparse) and the out-of-core engine (streamed Parquet chunks) share this code.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sklearn.cluster import MiniBatchKMeans

log = logging.getLogger(__name__)

MatMul = Callable[[np.ndarray], np.ndarray]


def randomized_svd(
    matmat: MatMul,
    rmatmat: MatMul,
    shape: tuple[int, int],
    rank: int,
    n_iter: int = 4,
    oversample: int = 10,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truncated SVD ``A ≈ U diag(s) Vᵀ`` of an implicit matrix (Halko, Martinsson, Tropp 2011).

    ``matmat(X [n, l]) -> A X [m, l]`` and ``rmatmat(Y [m, l]) -> Aᵀ Y [n, l]``; ``shape = (m, n)``.
    Power iterations are re-orthonormalised by QR each step for stability. Deterministic for a
    seed. Returns ``U [m, r]``, ``s [r]``, ``Vt [r, n]`` with ``r = min(rank, m, n)``.
    """
    m, n = shape
    rank = max(1, min(rank, m, n))
    width = min(rank + oversample, m, n)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(matmat(rng.standard_normal((n, width))))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(rmatmat(q))
        q, _ = np.linalg.qr(matmat(z))
    b = rmatmat(q).T  # [width, n] = Qᵀ A
    u_small, s, vt = np.linalg.svd(b, full_matrices=False)
    u = q @ u_small
    # Fix the sign ambiguity so results do not depend on LAPACK details.
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(u.shape[1])])
    signs[signs == 0] = 1
    u *= signs
    vt *= signs[:, None]
    return u[:, :rank], s[:rank], vt[:rank]


def inverse_sqrt_degree(strength: np.ndarray) -> np.ndarray:
    """``d^{-1/2}`` of node strengths, 0 for nodes without history (the SVD's normalisation)."""
    return np.where(strength > 0, 1.0 / np.sqrt(np.maximum(strength, 1e-300)), 0.0)


def normalise_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def node_weights(strength: np.ndarray, quantile: float = 0.5) -> np.ndarray:
    """``w_v = min(1, strength_v / θ)``, ``θ`` = the ``quantile`` of the non-zero strengths."""
    strength = np.asarray(strength, dtype=np.float64)
    active = strength > 0
    if not active.any():
        return np.zeros_like(strength)
    theta = float(np.quantile(strength[active], quantile))
    if theta <= 0:
        return active.astype(np.float64)
    return np.minimum(1.0, strength / theta)


def weighted_kmeans(
    embeddings: np.ndarray,
    n_clusters: int,
    weights: np.ndarray | None,
    seed: int = 0,
    batch_size: int = 4096,
    n_init: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mini-batch k-means; returns ``(labels int32 [n], centroids float32 [K, k])``."""
    n = embeddings.shape[0]
    n_clusters = max(1, min(n_clusters, n))
    km = MiniBatchKMeans(
        n_clusters=n_clusters,
        batch_size=min(batch_size, max(n, 1)),
        n_init=n_init,
        random_state=seed,
        max_no_improvement=20,
        reassignment_ratio=0.01,
    )
    km.fit(embeddings, sample_weight=weights)
    centroids = km.cluster_centers_.astype(np.float32)
    return nearest_centroid(embeddings, centroids), centroids


def nearest_centroid(embeddings: np.ndarray, centroids: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Index of the nearest centroid (squared Euclidean) of every row, in float32.

    The single assignment rule used at build time and for leave-one-out re-assignment at
    lookup time, so both agree bit for bit.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    c = np.asarray(centroids, dtype=np.float32)
    c_sq = (c * c).sum(axis=1)
    out = np.empty(len(x), dtype=np.int32)
    for s in range(0, len(x), chunk):  # bounded memory: [chunk, K] distances at a time
        block = x[s : s + chunk]
        out[s : s + chunk] = np.argmin(c_sq[None, :] - 2.0 * block @ c.T, axis=1)
    return out


def assign_clusters(
    embeddings: np.ndarray,
    strength: np.ndarray,
    n_clusters: int,
    *,
    weighted: bool = True,
    threshold_quantile: float = 0.5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Macro node of every node: k-means on the active nodes, the cold node ``K`` for the rest.

    Returns ``(assignment int32 [n], centroids [K, dim], K)``; ``K`` is reduced to the number of
    active nodes when fewer (logged).
    """
    active = np.asarray(strength) > 0
    n_active = int(active.sum())
    k = max(1, min(n_clusters, n_active))
    if k < n_clusters:
        log.warning("only %d nodes with history: using %d macro nodes instead of %d", n_active, k, n_clusters)
    assignment = np.full(len(active), k, dtype=np.int32)
    if n_active == 0:
        return assignment, np.zeros((0, embeddings.shape[1]), np.float32), k
    weights = node_weights(strength, threshold_quantile)[active] if weighted else None
    labels, centroids = weighted_kmeans(embeddings[active], k, weights, seed=seed)
    assignment[active] = labels
    return assignment, centroids, k

"""Macro neighbour features (METHOD.md §4) and their leave-one-out lookup.

For a graph with weighted adjacency ``A [U, I]`` (the merged graph ``S`` or a task graph
``R_t``), user macro node ``c(u) ∈ 0..KU−1`` and item macro node ``c(i) ∈ 0..KI−1``::

    user first order   n_u[k] = Σ_{i: c(i)=k} A_ui                         [U, KI]
    item first order   n_i[k] = Σ_{u: c(u)=k} A_ui                         [I, KU]
    user second order  m_u[k] = Σ_i A_ui Σ_{u'≠u, c(u')=k} A_u'i
                              = (A N_I)_uk − [k = c(u)] Σ_i A_ui²          [U, KU]
    item second order  m_i[k] = (Aᵀ N_U)_ik − [k = c(i)] Σ_u A_ui²          [I, KI]

Leave-one-out for a training sample ``(u, i)`` whose own edge has weight ``a = A_ui`` (exact,
O(K) per sample; all four use the full first-order vectors)::

    n_u[c(i)] −= a          m_u −= a (n_i − a e_{c(u)})
    n_i[c(u)] −= a          m_i −= a (n_u − a e_{c(i)})

and the sample's own user and item are re-assigned to macro nodes from their spectral
coordinates without the edge (:class:`LooAssignment`): for a sparse node the k-means
assignment was fitted on the very edge whose label the sample predicts, a leak the counts
alone do not remove.

All graphs of a side and order are stacked column-wise into one CSR matrix
``[nodes, G · K]`` (column ``g · K + k``), so a batch gathers each kind with one sparse slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

KINDS = ("user_first", "user_second", "item_first", "item_second")

FEATURE_TOLERANCE = 1e-6
"""Feature entries below this magnitude are dropped by every engine (self-path residues)."""
FEATURE_SCHEMA = pa.schema([("graph", pa.int16()), ("node", pa.int32()), ("macro", pa.int32()),
                            ("weight", pa.float32())])
"""The long Parquet layout of a feature kind file, written by every engine."""


def onehot(assignment: np.ndarray, n_macro: int) -> sp.csr_matrix:
    n = len(assignment)
    return sp.csr_matrix(
        (np.ones(n, dtype=np.float64), (np.arange(n), assignment.astype(np.int64))), shape=(n, n_macro)
    )


def _drop_tiny(m: sp.spmatrix, tol: float = FEATURE_TOLERANCE) -> sp.csr_matrix:
    """Remove the ~1e-16 residues the self-path subtraction leaves in float arithmetic."""
    m = sp.csr_matrix(m)
    m.data[np.abs(m.data) < tol] = 0.0
    m.eliminate_zeros()
    return m


def graph_features(
    adjacency: sp.csr_matrix, user_macro: np.ndarray, item_macro: np.ndarray, n_user_macro: int, n_item_macro: int
) -> dict[str, sp.csr_matrix]:
    """The four feature matrices of one graph (float64 CSR), from the equations above."""
    a = sp.csr_matrix(adjacency, dtype=np.float64)
    a.eliminate_zeros()
    at = a.T.tocsr()
    user_first = a @ onehot(item_macro, n_item_macro)
    item_first = at @ onehot(user_macro, n_user_macro)
    sq = a.multiply(a)
    user_self = np.asarray(sq.sum(axis=1)).ravel()
    item_self = np.asarray(sq.sum(axis=0)).ravel()
    user_second = a @ item_first - sp.csr_matrix(
        (user_self, (np.arange(a.shape[0]), user_macro)), shape=(a.shape[0], n_user_macro)
    )
    item_second = at @ user_first - sp.csr_matrix(
        (item_self, (np.arange(a.shape[1]), item_macro)), shape=(a.shape[1], n_item_macro)
    )
    return {
        "user_first": _drop_tiny(user_first),
        "user_second": _drop_tiny(user_second),
        "item_first": _drop_tiny(item_first),
        "item_second": _drop_tiny(item_second),
    }


def stack_graphs(per_graph: list[sp.csr_matrix]) -> sp.csr_matrix:
    """Stack ``[nodes, K]`` matrices of G graphs into ``[nodes, G·K]`` (float32)."""
    return sp.hstack(per_graph, format="csr", dtype=np.float32)


@dataclass
class HistoryEdges:
    """The history graph's distinct edges, sorted by ``key = user · num_items + item``.

    ``weights [E, G]`` holds each edge's weight in every graph (merged score, then 0/1 per task).
    """

    keys: np.ndarray
    weights: np.ndarray
    num_items: int

    def lookup(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Edge weights ``[B, G]`` of the pairs (zeros where the pair is not an edge)."""
        keys = users.astype(np.int64) * np.int64(self.num_items) + items.astype(np.int64)
        out = np.zeros((len(keys), self.weights.shape[1]), dtype=np.float32)
        if self.keys.size == 0:
            return out
        pos = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        hit = self.keys[pos] == keys
        out[hit] = self.weights[pos[hit]]
        return out

    def _adjacency(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user_ptr, item_ptr, item_order): CSR pointers of edges by user (keys are sorted by
        user) and by item (through a stable order of the edges by item)."""
        if not hasattr(self, "_adj"):
            users = self.keys // self.num_items
            items = self.keys % self.num_items
            n_users = int(users.max()) + 1 if users.size else 0
            user_ptr = np.r_[0, np.cumsum(np.bincount(users, minlength=n_users))]
            item_ptr = np.r_[0, np.cumsum(np.bincount(items, minlength=self.num_items))]
            self._adj = (user_ptr, item_ptr, np.argsort(items, kind="stable"))
        return self._adj

    def random_edges(self, nodes: np.ndarray, side: str, uniforms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One history edge of every node, picked by ``uniforms [n]`` in [0, 1) (uniform over
        the node's edges): ``(other end [n], weights [n, G])``; other end −1 and zero weights
        for nodes without history."""
        user_ptr, item_ptr, item_order = self._adjacency()
        ptr = user_ptr if side == "user" else item_ptr
        nodes = np.asarray(nodes, dtype=np.int64)
        known = nodes < len(ptr) - 1
        start = np.zeros(len(nodes), dtype=np.int64)
        degree = np.zeros(len(nodes), dtype=np.int64)
        start[known] = ptr[nodes[known]]
        degree[known] = ptr[nodes[known] + 1] - start[known]
        pick = start + np.minimum(np.floor(uniforms * degree).astype(np.int64), np.maximum(degree - 1, 0))
        has = degree > 0
        edge = pick[has] if side == "user" else item_order[pick[has]]
        other = np.full(len(nodes), -1, dtype=np.int64)
        weights = np.zeros((len(nodes), self.weights.shape[1]), dtype=np.float32)
        other[has] = self.keys[edge] % self.num_items if side == "user" else self.keys[edge] // self.num_items
        weights[has] = self.weights[edge]
        return other, weights


@dataclass
class LooAssignment:
    """What leave-one-out re-assignment of a training sample's own macro nodes needs.

    A node's spectral coordinates are a sum over its edges (``y_u = Σ_j s_uj · basis_j``), so
    without the sample's edge ``(u, i)`` they are ``y_u − s_ui · item_basis_i`` (and
    ``x_i − s_ui · user_basis_u``); the node then goes to the nearest centroid, or to the cold
    node if nothing is left. Basis and centroids stay those fitted on the full history graph.
    """

    user_coords: np.ndarray  # float32 [U, r]
    user_basis: np.ndarray  # float32 [U, r]
    user_centroids: np.ndarray  # float32 [KU - 1, r]
    item_coords: np.ndarray  # float32 [I, r]
    item_basis: np.ndarray  # float32 [I, r]
    item_centroids: np.ndarray  # float32 [KI - 1, r]

    def reassign(
        self, nodes: np.ndarray, others: np.ndarray, merged_weight: np.ndarray, side: str, k: int
    ) -> np.ndarray:
        """Macro nodes of ``nodes`` (users if ``side == "user"``) after removing their edge to
        ``others`` with merged weight ``merged_weight``."""
        from mgoe.graph.grouping import nearest_centroid, normalise_rows

        w = merged_weight.astype(np.float32)[:, None]
        if side == "user":
            coords, removed, centroids = self.user_coords[nodes], w * self.item_basis[others], self.user_centroids
        else:
            coords, removed, centroids = self.item_coords[nodes], w * self.user_basis[others], self.item_centroids
        remainder = coords - removed
        # The edge was the node's only one when the remainder is float round-off of the
        # coordinates: the node is then cold, as it would be at test time.
        empty = np.abs(remainder).max(axis=1) <= 1e-4 * np.abs(coords).max(axis=1)
        macro = np.full(len(coords), k - 1, dtype=np.int64)
        if (~empty).any():
            macro[~empty] = nearest_centroid(normalise_rows(remainder[~empty]), centroids)
        return macro


@dataclass
class MacroFeatureTable:
    """All macro features of a graph directory, ready for vectorised batch lookup."""

    graphs: list[str]
    user_macro: np.ndarray  # int32 [U]; cold = KU - 1
    item_macro: np.ndarray  # int32 [I]; cold = KI - 1
    num_user_macro: int  # KU, cold node included
    num_item_macro: int  # KI
    stacked: dict[str, sp.csr_matrix]  # kind -> [nodes, G * K]
    edges: HistoryEdges
    reassign: LooAssignment | None = None
    """Leave-one-out re-assignment of a training sample's own macro nodes (None: keep them)."""
    balanced: bool = True
    """Balanced leave-one-out: a training sample without an edge of its own loses one random
    edge of its user and one of its item instead, so that every training sample sees its
    nodes with exactly one edge fewer and the missing mass carries no label."""

    def macro_of(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Macro nodes of (possibly unknown: index ≥ table size) users and items; unknown → cold."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        u_ok = (users >= 0) & (users < len(self.user_macro))
        i_ok = (items >= 0) & (items < len(self.item_macro))
        um = np.full(users.shape, self.num_user_macro - 1, dtype=np.int64)
        im = np.full(items.shape, self.num_item_macro - 1, dtype=np.int64)
        um[u_ok] = self.user_macro[users[u_ok]]
        im[i_ok] = self.item_macro[items[i_ok]]
        return um, im

    def _gather(self, kind: str, nodes: np.ndarray, k: int) -> np.ndarray:
        matrix = self.stacked[kind]
        ok = (nodes >= 0) & (nodes < matrix.shape[0])
        out = np.zeros((len(nodes), len(self.graphs), k), dtype=np.float32)
        if ok.any():
            out[ok] = matrix[nodes[ok]].toarray().reshape(int(ok.sum()), len(self.graphs), k)
        return out

    def lookup(
        self,
        users: np.ndarray,
        items: np.ndarray,
        leave_one_out: np.ndarray | bool = False,
        draws: np.ndarray | None = None,
        return_removed: bool = False,
    ) -> dict[str, np.ndarray]:
        """Dense features of a batch, leave-one-out applied where ``leave_one_out`` is True.

        Returns ``user_first [B, G, KI]``, ``user_second [B, G, KU]``, ``item_first [B, G, KU]``,
        ``item_second [B, G, KI]`` (float32) and ``user_macro``, ``item_macro`` (int64 [B]).
        With leave-one-out, a sample whose pair is a history edge loses that edge; with
        ``balanced`` a sample without one loses a random edge of its user and one of its item,
        picked by the sample's ``draws [B, 2]`` (uniforms in [0, 1); the caller derives them from
        the row, so any batching or sharding of the same rows gives the same features; default:
        a fixed generator). ``return_removed`` adds ``removed_user_edge_item`` and
        ``removed_item_edge_user`` ([B], −1 where nothing was removed), for tests.
        """
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        ku, ki = self.num_user_macro, self.num_item_macro
        user_macro, item_macro = self.macro_of(users, items)
        uf = self._gather("user_first", users, ki)
        us = self._gather("user_second", users, ku)
        itf = self._gather("item_first", items, ku)
        its = self._gather("item_second", items, ki)
        removed_item = np.full(len(users), -1, dtype=np.int64)
        removed_user = np.full(len(users), -1, dtype=np.int64)
        loo = np.broadcast_to(np.asarray(leave_one_out, dtype=bool), users.shape)
        if loo.any():
            rows = np.flatnonzero(loo)
            own_w = self.edges.lookup(users[rows], items[rows])  # [R, G]
            own = own_w.any(axis=1)
            # The edge each side loses: the sample's own, else (balanced) a random one.
            user_other = np.where(own, items[rows], -1)  # item end of the user's lost edge
            user_w = own_w.copy()
            item_other = np.where(own, users[rows], -1)  # user end of the item's lost edge
            item_w = own_w.copy()
            if self.balanced and (~own).any():
                if draws is None:
                    draws = np.random.default_rng(0).random((len(users), 2))
                free = ~own
                picks = np.asarray(draws)[rows[free]]
                user_other[free], user_w[free] = self.edges.random_edges(users[rows[free]], "user", picks[:, 0])
                item_other[free], item_w[free] = self.edges.random_edges(items[rows[free]], "item", picks[:, 1])
            cu, ci = user_macro[rows], item_macro[rows]
            # Full first-order vectors of the lost edges' far ends, before any correction.
            u_has = user_other >= 0
            i_has = item_other >= 0
            far_item_first = np.zeros((rows.size, len(self.graphs), ku), dtype=np.float32)
            far_user_first = np.zeros((rows.size, len(self.graphs), ki), dtype=np.float32)
            far_item_first[own] = itf[rows[own]]
            far_user_first[own] = uf[rows[own]]
            other_u = u_has & ~own
            other_i = i_has & ~own
            if other_u.any():
                far_item_first[other_u] = self._gather("item_first", user_other[other_u], ku)
            if other_i.any():
                far_user_first[other_i] = self._gather("user_first", item_other[other_i], ki)
            idx = np.arange(rows.size)
            # user side: n_u[c(j)] −= b ;  m_u −= b (n_j − b e_{c(u)})
            if u_has.any():
                r = idx[u_has]
                b = user_w[u_has]
                cj = self.item_macro[user_other[u_has]]
                far_item_first[r, :, cu[u_has]] -= b
                us[rows[r]] -= b[:, :, None] * far_item_first[r]
                uf[rows[r], :, cj] -= b
            # item side: n_i[c(v)] −= c ;  m_i −= c (n_v − c e_{c(i)})
            if i_has.any():
                r = idx[i_has]
                c = item_w[i_has]
                cv = self.user_macro[item_other[i_has]]
                far_user_first[r, :, ci[i_has]] -= c
                its[rows[r]] -= c[:, :, None] * far_user_first[r]
                itf[rows[r], :, cv] -= c
            if self.reassign is not None:
                # the sample's own nodes as if the lost edges had never been seen
                if u_has.any():
                    user_macro[rows[u_has]] = self.reassign.reassign(
                        users[rows[u_has]], user_other[u_has], user_w[u_has, 0], "user", ku)
                if i_has.any():
                    item_macro[rows[i_has]] = self.reassign.reassign(
                        items[rows[i_has]], item_other[i_has], item_w[i_has, 0], "item", ki)
            removed_item[rows] = user_other
            removed_user[rows] = item_other
        out = {
            "user_first": uf,
            "user_second": us,
            "item_first": itf,
            "item_second": its,
            "user_macro": user_macro,
            "item_macro": item_macro,
        }
        if return_removed:
            out["removed_user_edge_item"] = removed_item
            out["removed_item_edge_user"] = removed_user
        return out

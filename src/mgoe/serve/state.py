"""The mutable online state of a scorer: id maps, macro feature rows, pair task masks.

Feature rows (:class:`FeatureRows`)
    One feature kind of every graph, ``[nodes, G · K]`` (column ``g · K + k``), as the graph
    build wrote it: an immutable float32 CSR matrix (the batch state) plus *overrides*: dense
    float64 ``[G · K]`` rows, in a growable store indexed by a per-node slot table, for the
    nodes that online events changed (and for nodes that exist only online). A gather reads
    the CSR rows and then the overridden ones with a few vectorised numpy operations; an update
    materialises the node's row once (O(nnz of the row) ≤ O(G · K)) and adds to it in place,
    so an event costs O(K) and never rebuilds a table. :meth:`FeatureRows.compact` folds the
    overrides back into a new CSR (O(nnz), done when the overrides grow past a size limit; see
    ``ScorerConfig``).

    Why not dense arrays: a dense first-order table is ``nodes · G · K · 4`` bytes (2M users,
    G = 4, K = 257: 8 GB), while gathering 100 CSR rows costs tens of microseconds (see
    BENCHMARKS.md, Serving); the overrides hold only what changed since the last batch build.

Pair masks (:class:`PairMasks`)
    The task bit mask of every history edge (sorted keys ``user · num_items + item`` from
    ``edges.parquet``) plus a dict of pairs changed online.

Id maps (:class:`IdMap`)
    Original id (string) -> index: the dataset's ids are ``0 .. n-1``; index ``n`` is the
    fallback (unknown id); ids first seen in online events get ``n + 1, n + 2, ...`` in order
    of arrival (so replaying the same event log yields the same indices).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class FeatureRows:
    """Rows of one stacked feature kind: float32 CSR base plus float64 dense overrides."""

    def __init__(self, matrix: sp.csr_matrix, graphs: int, k: int) -> None:
        if not (sp.issparse(matrix) and matrix.format == "csr" and matrix.dtype == np.float32):
            matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sort_indices()
        self.graphs = graphs
        self.k = k
        self.width = graphs * k
        self._set_base(matrix)

    def _set_base(self, matrix: sp.csr_matrix) -> None:
        self.indptr = matrix.indptr.astype(np.int64, copy=False)
        self.indices = matrix.indices.astype(np.int32, copy=False)  # G · K columns: int32 halves the memory
        self.data = matrix.data
        self.num_base = matrix.shape[0]
        # Overrides: slot[node] = row of `store` holding the node's current values, or -1.
        self._slot = np.full(self.num_base, -1, dtype=np.int64)
        self._store = np.zeros((0, self.width), dtype=np.float64)
        self.num_overrides = 0

    @property
    def nbytes(self) -> int:
        """Memory of the base table and the override store."""
        return (self.indptr.nbytes + self.indices.nbytes + self.data.nbytes
                + self._slot.nbytes + self._store.nbytes)

    @property
    def override_bytes(self) -> int:
        return self.num_overrides * self.width * 8

    def _slots(self, nodes: np.ndarray) -> np.ndarray:
        slots = np.full(len(nodes), -1, dtype=np.int64)
        inside = (nodes >= 0) & (nodes < self._slot.size)
        slots[inside] = self._slot[nodes[inside]]
        return slots

    def gather(self, nodes: np.ndarray) -> np.ndarray:
        """``float32 [B, G, K]`` rows of ``nodes``; nodes outside the table give zeros."""
        nodes = np.asarray(nodes, dtype=np.int64)
        out = np.zeros((len(nodes), self.width), dtype=np.float32)
        ok = (nodes >= 0) & (nodes < self.num_base)
        rows = np.where(ok, nodes, 0)
        starts = np.where(ok, self.indptr[rows], 0)
        lengths = np.where(ok, self.indptr[rows + 1] - starts, 0)
        total = int(lengths.sum())
        if total:
            offsets = np.cumsum(lengths) - lengths
            pos = np.arange(total) - np.repeat(offsets - starts, lengths)
            out[np.repeat(np.arange(len(nodes)), lengths), self.indices[pos]] = self.data[pos]
        if self.num_overrides:
            slots = self._slots(nodes)
            hit = slots >= 0
            if hit.any():
                out[hit] = self._store[slots[hit]]
        return out.reshape(len(nodes), self.graphs, self.k)

    def row(self, node: int) -> np.ndarray:
        """The node's current row ``float64 [G · K]`` (a copy)."""
        slot = self._slots(np.array([node]))[0]
        return self._store[slot].copy() if slot >= 0 else self._base_row(node)

    def _base_row(self, node: int) -> np.ndarray:
        row = np.zeros(self.width, dtype=np.float64)
        if 0 <= node < self.num_base:
            s, e = self.indptr[node], self.indptr[node + 1]
            row[self.indices[s:e]] = self.data[s:e]
        return row

    def add(self, node: int, columns: list[int], values: list[float]) -> None:
        """``row[node, columns] += values`` (O(G · K) the first time a node changes, then O(1);
        the override store and slot table grow by doubling, amortised O(1))."""
        if node < 0:
            raise ValueError(f"negative node {node}")
        if node >= self._slot.size:
            grown = np.full(max(node + 1, 2 * self._slot.size, 16), -1, dtype=np.int64)
            grown[: self._slot.size] = self._slot
            self._slot = grown
        slot = int(self._slot[node])
        if slot < 0:
            if self.num_overrides == len(self._store):
                grown = np.zeros((max(16, 2 * len(self._store)), self.width), dtype=np.float64)
                grown[: self.num_overrides] = self._store[: self.num_overrides]
                self._store = grown
            slot = self.num_overrides
            self._store[slot] = self._base_row(node)
            self._slot[node] = slot
            self.num_overrides += 1
        self._store[slot, columns] += values  # columns are distinct

    def compact(self) -> None:
        """Fold the overrides into a new CSR base (O(nnz)); the override store is emptied."""
        if not self.num_overrides:
            return
        nodes = np.flatnonzero(self._slot >= 0)
        dense = self._store[self._slot[nodes]]
        n = max(self.num_base, int(nodes.max()) + 1)
        entry_rows = np.repeat(np.arange(self.num_base), np.diff(self.indptr))
        replaced = np.zeros(n, dtype=bool)
        replaced[nodes] = True
        keep = ~replaced[entry_rows]
        r, c = np.nonzero(dense)
        rows = np.concatenate([entry_rows[keep], nodes[r]])
        cols = np.concatenate([self.indices[keep], c])
        vals = np.concatenate([self.data[keep].astype(np.float64), dense[r, c]]).astype(np.float32)
        matrix = sp.csr_matrix((vals, (rows, cols)), shape=(n, self.width), dtype=np.float32)
        matrix.sort_indices()
        self._set_base(matrix)


class PairMasks:
    """Task bit masks of (user, item) pairs: history edges plus pairs changed online."""

    def __init__(self, users: np.ndarray, items: np.ndarray, masks: np.ndarray, num_items: int) -> None:
        self.num_items = int(num_items)
        keys = users.astype(np.int64) * np.int64(self.num_items) + items.astype(np.int64)
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.masks = masks.astype(np.int64)[order]
        self.changed: dict[tuple[int, int], int] = {}

    def get(self, user: int, item: int) -> int:
        """The pair's current mask (0 when it was never positive)."""
        mask = self.changed.get((user, item))
        if mask is not None:
            return mask
        if item >= self.num_items or self.keys.size == 0:
            return 0
        key = user * self.num_items + item
        pos = int(np.searchsorted(self.keys, key))
        if pos < self.keys.size and self.keys[pos] == key:
            return int(self.masks[pos])
        return 0

    def set(self, user: int, item: int, mask: int) -> None:
        self.changed[(user, item)] = mask


class IdMap:
    """Original ids -> indices; dataset ids ``0..n-1``, fallback ``n``, online ids from ``n + 1``.

    A plain dict: a lookup of 100 ids costs ~8 µs, against ~110 µs for ``pd.Index.get_indexer``
    (whose per-call overhead dominates small requests); about 130 bytes per id.
    """

    def __init__(self, ids: np.ndarray) -> None:
        keys = np.asarray(ids).astype(str).tolist()
        self.map: dict[str, int] = {k: i for i, k in enumerate(keys)}
        if len(self.map) != len(keys):
            raise ValueError("ids are not unique")
        self.size = len(keys)
        self.added: dict[str, int] = {}

    @property
    def fallback(self) -> int:
        return self.size

    def lookup(self, ids: list[str]) -> np.ndarray:
        """Indices of ``ids`` (``int64``); ids never seen map to the fallback index ``n``."""
        get, fallback = self.map.get, self.size
        return np.fromiter((get(k, fallback) for k in ids), dtype=np.int64, count=len(ids))

    def get(self, one_id: str) -> int | None:
        """Index of one id, or None when it was never seen."""
        return self.map.get(one_id)

    def add(self, one_id: str) -> int:
        """Give an id first seen online the next free index (``n + 1 + #added``)."""
        index = self.size + 1 + len(self.added)
        self.added[one_id] = index
        self.map[one_id] = index
        return index

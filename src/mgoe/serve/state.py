"""The mutable online state of a scorer: id maps, macro feature rows, pair task masks.

Feature rows (:class:`FeatureRows`)
    One feature kind of every graph, ``[nodes, G · K]`` (column ``g · K + k``), as the graph
    build wrote it: an immutable float32 base table — CSR, or dense when at least half the
    entries are non-zero (second-order tables usually are) — plus *overrides*: dense
    float64 ``[G · K]`` rows, in a growable store indexed by a per-node slot table, for the
    nodes that online events changed (and for nodes that exist only online). A gather reads
    the CSR rows and then the overridden ones with a few vectorised numpy operations; an update
    materialises the node's row once (O(nnz of the row) ≤ O(G · K)) and adds to it in place,
    so an event costs O(K) and never rebuilds a table. :meth:`FeatureRows.compact` folds the
    overrides back into a new CSR (O(nnz), done when the overrides grow past a size limit; see
    ``ScorerConfig``).

    Why first-order tables are not dense: a dense first-order table is ``nodes · G · K · 4``
    bytes (2M users, G = 4, K = 65: 2 GB; K = 257: 8 GB) although only a few percent of it is
    non-zero, while gathering 100 CSR rows costs tens of microseconds, next to milliseconds for
    the model (see BENCHMARKS.md, Serving); the overrides hold only what changed since the last
    batch build, and an update is O(1) in both layouts.

Pair masks (:class:`PairMasks`)
    The task bit mask of every history edge (sorted keys ``user · num_items + item`` from
    ``edges.parquet``) plus a dict of pairs changed online.

Id maps (:class:`IdMap`)
    Original id (string) -> index: the dataset's ids are ``0 .. n-1``; index ``n`` is the
    fallback (unknown id); ids first seen in online events get ``n + 1, n + 2, ...`` in order
    of arrival (so replaying the same event log yields the same indices).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import scipy.sparse as sp


class FeatureRows:
    """Rows of one stacked feature kind: a float32 base (CSR or dense) plus float64 overrides.

    Build it with :func:`load_feature_rows` (streamed from the graph build's Parquet file), from
    a scipy CSR matrix, or from a dense ``[nodes, G · K]`` float32 array.
    """

    def __init__(self, base: sp.csr_matrix | np.ndarray, graphs: int, k: int) -> None:
        self.graphs = graphs
        self.k = k
        self.width = graphs * k
        if isinstance(base, np.ndarray):
            self._set_dense(base)
        else:
            if not (sp.issparse(base) and base.format == "csr"):
                base = sp.csr_matrix(base)
            self._set_csr(base.indptr, base.indices, base.data, base.shape[0])

    @classmethod
    def from_csr_arrays(cls, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int,
                        graphs: int, k: int) -> FeatureRows:
        """Rows over raw CSR arrays (kept as they are when already int64/int32/float32)."""
        rows = cls.__new__(cls)
        rows.graphs, rows.k, rows.width = graphs, k, graphs * k
        rows._set_csr(indptr, indices, data, n)
        return rows

    # ------------------------------------------------------------------ base tables

    def _set_csr(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n: int) -> None:
        self.dense: np.ndarray | None = None
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.indices = np.asarray(indices, dtype=np.int32)  # G · K columns: int32 halves the memory
        self.data = np.asarray(data, dtype=np.float32)
        self._reset(n)

    def _set_dense(self, dense: np.ndarray) -> None:
        self.dense = np.asarray(dense, dtype=np.float32)
        self.indptr = self.indices = self.data = None  # type: ignore[assignment]
        self._reset(self.dense.shape[0])

    def _reset(self, n: int) -> None:
        self.num_base = n
        # Overrides: slot[node] = row of `store` holding the node's current values, or -1.
        self._slot = np.full(n, -1, dtype=np.int64)
        self._store = np.zeros((0, self.width), dtype=np.float64)
        self.num_overrides = 0

    @property
    def storage(self) -> str:
        """``dense`` or ``csr``."""
        return "csr" if self.dense is None else "dense"

    @property
    def nbytes(self) -> int:
        """Memory of the base table and the override store."""
        base = (self.dense.nbytes if self.dense is not None
                else self.indptr.nbytes + self.indices.nbytes + self.data.nbytes)
        return base + self._slot.nbytes + self._store.nbytes

    @property
    def override_bytes(self) -> int:
        return self.num_overrides * self.width * 8

    # ------------------------------------------------------------------ reads

    def _slots(self, nodes: np.ndarray) -> np.ndarray:
        slots = np.full(len(nodes), -1, dtype=np.int64)
        inside = (nodes >= 0) & (nodes < self._slot.size)
        slots[inside] = self._slot[nodes[inside]]
        return slots

    def gather(self, nodes: np.ndarray) -> np.ndarray:
        """``float32 [B, G, K]`` rows of ``nodes``; nodes outside the table give zeros."""
        nodes = np.asarray(nodes, dtype=np.int64)
        ok = (nodes >= 0) & (nodes < self.num_base)
        if self.dense is not None:
            if ok.all():
                out = self.dense[nodes]
            else:
                out = np.zeros((len(nodes), self.width), dtype=np.float32)
                out[ok] = self.dense[nodes[ok]]
        else:
            out = np.zeros((len(nodes), self.width), dtype=np.float32)
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
            if self.dense is not None:
                row[:] = self.dense[node]
            else:
                s, e = self.indptr[node], self.indptr[node + 1]
                row[self.indices[s:e]] = self.data[s:e]
        return row

    # ------------------------------------------------------------------ writes

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
        """Fold the overrides into the base table (CSR: an O(nnz) rebuild; dense: in place)."""
        if not self.num_overrides:
            return
        nodes = np.flatnonzero(self._slot >= 0)
        rows = self._store[self._slot[nodes]]
        n = max(self.num_base, int(nodes.max()) + 1)
        if self.dense is not None:
            dense = self.dense
            if n > self.num_base:
                dense = np.zeros((n, self.width), dtype=np.float32)
                dense[: self.num_base] = self.dense
            dense[nodes] = rows
            self._set_dense(dense)
            return
        entry_rows = np.repeat(np.arange(self.num_base), np.diff(self.indptr))
        replaced = np.zeros(n, dtype=bool)
        replaced[nodes] = True
        keep = ~replaced[entry_rows]
        r, c = np.nonzero(rows)
        all_rows = np.concatenate([entry_rows[keep], nodes[r]])
        cols = np.concatenate([self.indices[keep], c])
        vals = np.concatenate([self.data[keep].astype(np.float64), rows[r, c]]).astype(np.float32)
        matrix = sp.csr_matrix((vals, (all_rows, cols)), shape=(n, self.width), dtype=np.float32)
        self._set_csr(matrix.indptr, matrix.indices, matrix.data, n)


def load_feature_rows(path: str | Path, n_nodes: int, graphs: int, k: int, dense_above: float = 0.5,
                      batch_rows: int = 4_000_000) -> FeatureRows:
    """Stream a feature kind's long Parquet file (graph, node, macro, weight) into
    :class:`FeatureRows`, dense when at least ``dense_above`` of the ``[nodes, G · K]`` entries
    are non-zero (then a dense float32 table is smaller than CSR's 8 bytes per entry, and
    faster to gather), CSR otherwise.

    Memory peaks at the final table plus one batch: the arrays are preallocated from the
    file's row count and filled batch by batch (the graph build writes rows in node order; a
    file in another order is read whole through scipy instead).
    """
    pf = pq.ParquetFile(path)
    nnz = pf.metadata.num_rows
    width = graphs * k
    columns = ["graph", "node", "macro", "weight"]

    def batches():
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            node = batch.column("node").to_numpy()
            col = batch.column("graph").to_numpy().astype(np.int32)
            col *= np.int32(k)
            col += batch.column("macro").to_numpy()
            yield node, col, batch.column("weight").to_numpy()

    if n_nodes and nnz >= dense_above * n_nodes * width:
        dense = np.zeros((n_nodes, width), dtype=np.float32)
        for node, col, weight in batches():
            dense[node, col] = weight
        return FeatureRows(dense, graphs, k)
    indices = np.empty(nnz, dtype=np.int32)
    data = np.empty(nnz, dtype=np.float32)
    counts = np.zeros(n_nodes, dtype=np.int64)
    pos, last, ordered = 0, -1, True
    for node, col, weight in batches():
        m = len(node)
        if m:
            ordered = ordered and node[0] >= last and bool(np.all(node[1:] >= node[:-1]))
            last = int(node[-1])
            counts += np.bincount(node, minlength=n_nodes)
        indices[pos:pos + m] = col
        data[pos:pos + m] = weight
        pos += m
    if not ordered:
        t = pq.read_table(path, columns=columns)
        col = t["graph"].to_numpy().astype(np.int64) * k + t["macro"].to_numpy()
        matrix = sp.csr_matrix((t["weight"].to_numpy(), (t["node"].to_numpy(), col)),
                               shape=(n_nodes, width), dtype=np.float32)
        return FeatureRows(matrix, graphs, k)
    indptr = np.zeros(n_nodes + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return FeatureRows.from_csr_arrays(indptr, indices, data, n_nodes, graphs, k)


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

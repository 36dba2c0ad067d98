"""Batches for training, evaluation and prediction: dataset rows + macro features, vectorised.

A batch is assembled from index arrays with numpy fancy indexing (side features) and one sparse
row slice per feature kind (macro features, :meth:`MacroFeatureTable.lookup`), with
leave-one-out applied in the same vectorised step for training rows. There is no per-sample
Python and no ``Dataset.__getitem__``.

Training rows get *balanced* leave-one-out features (a row without an edge of its own loses a
random edge of its user and of its item, picked by two uniforms of that row, seeded by
(seed, part)).

A split of at most ``CACHE_ROWS`` rows is cached in memory and shuffled globally every epoch.
A larger one streams by Parquet part file: an epoch visits the parts in a seeded order and
shuffles rows within each, so memory holds one part at a time (``prepare`` writes rows in a
random order, so every part is a random sample of the split).

Unknown ids (prediction on users or items never seen) map to one extra embedding row per side
(``num_users`` / ``num_items``) and to the cold macro node with empty macro features.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import torch

from mgoe.data.schema import ITEM_COL, USER_COL, Dataset
from mgoe.graph.build import load_graph
from mgoe.graph.features import MacroFeatureTable
from mgoe.models.spec import ModelSpec

CACHE_ROWS = 20_000_000
"""Splits with at most this many rows are kept in memory between epochs."""


class BatchSource:
    """Batches of a prepared dataset, with macro features from a graph directory (optional)."""

    def __init__(self, ds: Dataset, graph_dir: Path | None, table: MacroFeatureTable | None, manifest: dict | None):
        self.ds = ds
        self.data_dir = ds.root
        self.graph_dir = graph_dir
        self.table = table
        self.manifest = manifest
        self.tasks = list(ds.tasks)
        meta = ds.meta
        self.context_cols = list(meta.context_features)
        users = ds.users()
        items = ds.items()
        # One extra all-zero row for unknown ids.
        self.user_side = _side_codes(users, list(meta.user_features), meta.num_users)
        self.item_side = _side_codes(items, list(meta.item_features), meta.num_items)
        self._user_index = pd.Index(users["user_id"].astype(str))
        self._item_index = pd.Index(items["item_id"].astype(str))
        self.spec = ModelSpec(
            num_users=meta.num_users + 1,
            num_items=meta.num_items + 1,
            tasks=list(self.tasks),
            user_feature_sizes=list(meta.user_features.values()),
            item_feature_sizes=list(meta.item_features.values()),
            context_feature_sizes=list(meta.context_features.values()),
            num_user_macro=manifest["num_user_macro"] if manifest else 1,
            num_item_macro=manifest["num_item_macro"] if manifest else 1,
            graphs=list(manifest["graphs"]) if manifest else [],
        )
        self._cache: dict[str, list[dict[str, np.ndarray]]] = {}

    @classmethod
    def open(cls, data_dir: str | Path, graph_dir: str | Path | None = None) -> BatchSource:
        ds = Dataset.open(data_dir)
        if graph_dir is None:
            return cls(ds, None, None, None)
        manifest, table = load_graph(graph_dir)
        if manifest["num_users"] != ds.meta.num_users or manifest["num_items"] != ds.meta.num_items:
            from mgoe.errors import MgoeError

            raise MgoeError(
                f"graph {graph_dir} was built for {manifest['num_users']} users / {manifest['num_items']} "
                f"items, dataset {data_dir} has {ds.meta.num_users} / {ds.meta.num_items}"
            )
        return cls(ds, Path(graph_dir), table, manifest)

    # ------------------------------------------------------------------ rows

    def num_rows(self, split: str) -> int:
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self.ds.split_files(split))

    def _part_rows(self, split: str) -> list[int]:
        return [pq.ParquetFile(p).metadata.num_rows for p in self.ds.split_files(split)]

    def _read_part(self, path: Path) -> dict[str, np.ndarray]:
        cols = [USER_COL, ITEM_COL, *self.tasks, *self.context_cols]
        t = pq.read_table(path, columns=cols)
        part = {
            "user": t[USER_COL].to_numpy().astype(np.int64),
            "item": t[ITEM_COL].to_numpy().astype(np.int64),
            "labels": np.column_stack([t[c].to_numpy() for c in self.tasks]).astype(np.float32),
        }
        if self.context_cols:
            part["context"] = np.column_stack([t[c].to_numpy() for c in self.context_cols]).astype(np.int64)
        else:
            part["context"] = np.zeros((t.num_rows, 0), dtype=np.int64)
        return part

    def _parts(self, split: str) -> list[dict[str, np.ndarray]] | None:
        """The split in memory as ONE part (so a cached split is shuffled globally), or None
        when it is too large to cache and must stream part by part."""
        if split in self._cache:
            return self._cache[split]
        if self.num_rows(split) <= CACHE_ROWS:
            parts = [self._read_part(p) for p in self.ds.split_files(split)]
            self._cache[split] = [{k: np.concatenate([p[k] for p in parts]) for k in parts[0]}]
            return self._cache[split]
        return None

    def batches(
        self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0, start: int = 0
    ) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``split``; deterministic for (split, shuffle, seed); skips ``start`` batches.

        Training-split rows get leave-one-out macro features (their own edge removed).
        """
        files = self.ds.split_files(split)
        cached = self._parts(split)
        rows = [len(cached[0]["user"])] if cached is not None else self._part_rows(split)
        n_parts = len(rows)
        rng = np.random.default_rng(seed)
        order = rng.permutation(n_parts) if shuffle else np.arange(n_parts)
        part_seeds = rng.integers(0, 2**63 - 1, size=n_parts)
        loo = split == "train"
        skipped = 0
        for p in order:
            n_batches = -(-rows[p] // batch_size)
            if skipped + n_batches <= start:
                skipped += n_batches
                continue
            part = cached[p] if cached is not None else self._read_part(files[p])
            idx = np.random.default_rng(part_seeds[p]).permutation(rows[p]) if shuffle else np.arange(rows[p])
            # Balanced leave-one-out picks each row's random edges from two uniforms of that
            # row (seeded by seed and part): the same row gets the same features whatever the
            # batching, sharding (DDP micro-batches) or resume point.
            row_draws = (
                np.random.default_rng([seed, int(p)]).random((rows[p], 2), dtype=np.float32)
                if loo and self.table is not None and self.table.balanced else None
            )
            for b in range(n_batches):
                if skipped < start:
                    skipped += 1
                    continue
                sel = idx[b * batch_size : (b + 1) * batch_size]
                yield self._assemble(
                    part["user"][sel], part["item"][sel], part["context"][sel], part["labels"][sel], loo,
                    None if row_draws is None else row_draws[sel],
                )

    # ------------------------------------------------------------------ prediction

    def index_ids(self, user_ids, item_ids) -> tuple[np.ndarray, np.ndarray]:
        """Original ids → indices; unknown ids → ``num_users`` / ``num_items`` (fallback row)."""
        u = self._user_index.get_indexer(pd.Index(np.asarray(user_ids).astype(str)))
        i = self._item_index.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
        u = np.where(u < 0, self.ds.meta.num_users, u).astype(np.int64)
        i = np.where(i < 0, self.ds.meta.num_items, i).astype(np.int64)
        return u, i

    def pair_batches(self, user_ids, item_ids, batch_size: int = 4096) -> Iterator[dict[str, torch.Tensor]]:
        """Batches for (original user id, original item id) pairs, in order, without labels."""
        users, items = self.index_ids(user_ids, item_ids)
        context = np.zeros((len(users), len(self.context_cols)), dtype=np.int64)
        for s in range(0, len(users), batch_size):
            sl = slice(s, s + batch_size)
            yield self._assemble(users[sl], items[sl], context[sl], None, False)

    # ------------------------------------------------------------------ assembly

    def _assemble(
        self, users, items, context, labels, leave_one_out: bool, draws: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        batch: dict[str, torch.Tensor] = {
            "user": torch.from_numpy(users),
            "item": torch.from_numpy(items),
            "user_features": torch.from_numpy(self.user_side[users]),
            "item_features": torch.from_numpy(self.item_side[items]),
            "context_features": torch.from_numpy(np.ascontiguousarray(context)),
        }
        if labels is not None:
            batch["labels"] = torch.from_numpy(np.ascontiguousarray(labels))
        if self.table is not None:
            feats = self.table.lookup(users, items, leave_one_out=leave_one_out, draws=draws)
            for key, value in feats.items():
                batch[key] = torch.from_numpy(value)
        else:
            n = len(users)
            batch["user_macro"] = torch.zeros(n, dtype=torch.int64)
            batch["item_macro"] = torch.zeros(n, dtype=torch.int64)
        return batch


def _side_codes(table: pd.DataFrame, columns: list[str], n: int) -> np.ndarray:
    out = np.zeros((n + 1, len(columns)), dtype=np.int64)
    for j, col in enumerate(columns):
        out[:n, j] = table[col].to_numpy()
    return out

"""An in-memory batch source built from numpy arrays (tests, tabular data, experiments).

:class:`TensorBatchSource` has the interface of :class:`mgoe.train.inputs.BatchSource`
(``spec``, ``tasks``, ``num_rows``, ``batches``, ``pair_batches``) without a prepared dataset
directory. It holds

* per split, row arrays: ``user [N]``, ``item [N]``, ``labels [N, T]`` (required) and, optionally,
  any other key of the batch contract (:mod:`mgoe.models.spec`) given per row (e.g. training
  rows' leave-one-out macro counts, ``context_features``);
* optional per-node tables: ``user_table`` with keys among ``user_features``, ``user_macro``,
  ``user_first``, ``user_second`` indexed by user (``[U, ...]``), ``item_table`` likewise for
  items. A batch key missing from the rows is gathered from the table; missing from both it is
  filled with its neutral value (0 codes, the cold macro node, zero counts).

Unknown original ids in :meth:`TensorBatchSource.pair_batches` map to the last user / item row
(``num_users - 1`` / ``num_items - 1``), to the cold macro node and to empty macro counts, like
``BatchSource`` (whose spec reserves that row); :meth:`TensorBatchSource.from_arrays` with an
inferred spec reserves it too.

A source can be saved to a directory (``arrays.safetensors`` + ``source.json``; no pickle) and
reopened with :meth:`TensorBatchSource.open`, so a training run on it can be evaluated later.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.numpy import load_file, save_file

from mgoe.errors import MgoeError
from mgoe.io import atomic_directory, is_complete
from mgoe.models.spec import ModelSpec

USER_KEYS = ("user_features", "user_macro", "user_first", "user_second")
ITEM_KEYS = ("item_features", "item_macro", "item_first", "item_second")
ROW_KEYS = ("user", "item", "labels", "context_features", *USER_KEYS, *ITEM_KEYS)
UNKNOWN_ID = "\x00unknown"
"""Id of the spare row that :meth:`TensorBatchSource.from_arrays` adds (matches no real id)."""
_INT_KEYS = {"user", "item", "user_features", "item_features", "context_features",
             "user_macro", "item_macro"}


class TensorBatchSource:
    """Batches from numpy arrays held in memory; see the module docstring."""

    kind = "tensor"

    def __init__(
        self,
        spec: ModelSpec,
        splits: dict[str, dict[str, np.ndarray]],
        *,
        user_table: dict[str, np.ndarray] | None = None,
        item_table: dict[str, np.ndarray] | None = None,
        user_ids: Sequence[str] | None = None,
        item_ids: Sequence[str] | None = None,
        data_dir: str | Path | None = None,
    ) -> None:
        self.spec = spec
        self.tasks = list(spec.tasks)
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.graph_dir = None
        self.splits = {name: {k: _as_array(k, v) for k, v in rows.items()}
                       for name, rows in splits.items()}
        self.user_table = {k: _as_array(k, v) for k, v in (user_table or {}).items()}
        self.item_table = {k: _as_array(k, v) for k, v in (item_table or {}).items()}
        self.user_ids = ([str(v) for v in user_ids] if user_ids is not None
                         else [str(u) for u in range(spec.num_users)])
        self.item_ids = ([str(v) for v in item_ids] if item_ids is not None
                         else [str(i) for i in range(spec.num_items)])
        self._user_index = pd.Index(self.user_ids)
        self._item_index = pd.Index(self.item_ids)
        self._check()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_arrays(
        cls,
        splits: dict[str, dict[str, np.ndarray]],
        tasks: Sequence[str] | None = None,
        **kwargs,
    ) -> TensorBatchSource:
        """Infer the spec from the arrays (sizes = max code + 1, one spare id row per side).

        Macro sizes come from the count widths (``user_first`` has ``KI`` columns); graphs are
        ``["merged", *tasks]`` when macro counts are given.
        """
        user_table = kwargs.get("user_table") or {}
        item_table = kwargs.get("item_table") or {}
        first = next(iter(splits.values()))
        num_tasks = np.asarray(first["labels"]).shape[1]
        tasks = list(tasks) if tasks is not None else [f"task{t}" for t in range(num_tasks)]

        def arrays(key: str) -> list[np.ndarray]:
            out = [np.asarray(rows[key]) for rows in splits.values() if key in rows]
            table = user_table if key in USER_KEYS else item_table
            if key in table:
                out.append(np.asarray(table[key]))
            return out

        def max_index(key: str) -> int:
            return max((int(a.max()) for a in arrays(key) if a.size), default=-1)

        def sizes(key: str) -> list[int]:
            found = arrays(key)
            if not found or found[0].ndim < 2 or found[0].shape[1] == 0:
                return []
            stacked = np.concatenate([a.reshape(-1, a.shape[1]) for a in found])
            return [int(v) + 1 for v in stacked.max(axis=0)]

        def width(key: str) -> int | None:
            found = arrays(key)
            return int(found[0].shape[-1]) if found else None

        num_users = max(max_index("user") + 1, len(next(iter(user_table.values()), []))) + 1
        num_items = max(max_index("item") + 1, len(next(iter(item_table.values()), []))) + 1
        ku = width("user_second") or width("item_first")
        ki = width("user_first") or width("item_second")
        has_macro = ku is not None and ki is not None
        context_sizes: list[int] = []
        for rows in splits.values():
            if "context_features" in rows and np.asarray(rows["context_features"]).shape[1]:
                context = np.asarray(rows["context_features"])
                found = [int(v) + 1 for v in context.max(axis=0)]
                context_sizes = [max(a, b) for a, b in zip(context_sizes or found, found, strict=True)]
        spec = ModelSpec(
            num_users=num_users,
            num_items=num_items,
            tasks=tasks,
            user_feature_sizes=sizes("user_features"),
            item_feature_sizes=sizes("item_features"),
            context_feature_sizes=context_sizes,
            num_user_macro=ku if has_macro else 1,
            num_item_macro=ki if has_macro else 1,
            graphs=["merged", *tasks] if has_macro else [],
        )
        # the spare last row (unknown ids) gets neutral table values and an id nobody uses
        kwargs = dict(kwargs)
        for name, num_nodes in (("user_table", num_users), ("item_table", num_items)):
            table = kwargs.get(name) or {}
            padded = {}
            for key, value in table.items():
                value = np.asarray(value)
                if len(value) == num_nodes - 1:
                    spare = np.zeros((1, *value.shape[1:]), value.dtype)
                    if key.endswith("_macro"):
                        spare[:] = (spec.num_user_macro if key == "user_macro" else spec.num_item_macro) - 1
                    value = np.concatenate([value, spare])
                padded[key] = value
            kwargs[name] = padded
        for name, num_nodes in (("user_ids", num_users), ("item_ids", num_items)):
            ids = kwargs.get(name)
            if ids is not None and len(ids) == num_nodes - 1:
                kwargs[name] = [*map(str, ids), UNKNOWN_ID]
            elif ids is None:
                kwargs[name] = [*map(str, range(num_nodes - 1)), UNKNOWN_ID]
        return cls(spec, splits, **kwargs)

    def _check(self) -> None:
        spec = self.spec
        for name, rows in self.splits.items():
            for key in ("user", "item", "labels"):
                if key not in rows:
                    raise MgoeError(f"split {name!r} has no {key!r} array")
            n = len(rows["user"])
            for key, value in rows.items():
                if key not in ROW_KEYS:
                    raise MgoeError(f"split {name!r}: unknown array {key!r}; known: {', '.join(ROW_KEYS)}")
                if len(value) != n:
                    raise MgoeError(f"split {name!r}: {key!r} has {len(value)} rows, 'user' has {n}")
            if rows["labels"].shape[1:] != (spec.num_tasks,):
                raise MgoeError(f"split {name!r}: labels must be [N, {spec.num_tasks}], got {rows['labels'].shape}")
            if n and (rows["user"].max() >= spec.num_users or rows["item"].max() >= spec.num_items):
                raise MgoeError(f"split {name!r}: user/item index out of range of the spec")
        for table, keys, size, label in ((self.user_table, USER_KEYS, spec.num_users, "user"),
                                         (self.item_table, ITEM_KEYS, spec.num_items, "item")):
            for key, value in table.items():
                if key not in keys:
                    raise MgoeError(f"{label}_table: unknown array {key!r}; known: {', '.join(keys)}")
                if len(value) != size:
                    raise MgoeError(f"{label}_table[{key!r}] has {len(value)} rows, the spec {size} {label}s")
        if len(self.user_ids) != spec.num_users or len(self.item_ids) != spec.num_items:
            raise MgoeError("user_ids / item_ids must have one id per user / item of the spec")

    # ------------------------------------------------------------------ BatchSource interface

    def num_rows(self, split: str) -> int:
        return len(self._split(split)["user"])

    def batches(self, split: str, batch_size: int, *, shuffle: bool, seed: int = 0,
                start: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of ``split``, deterministic for (split, shuffle, seed); skips ``start`` batches."""
        rows = self._split(split)
        n = len(rows["user"])
        order = np.random.default_rng(seed).permutation(n) if shuffle else np.arange(n)
        for begin in range(start * batch_size, n, batch_size):
            sel = order[begin:begin + batch_size]
            yield self._assemble({k: v[sel] for k, v in rows.items()})

    def index_ids(self, user_ids: Sequence, item_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """Original ids -> indices; unknown ids -> the last row of each side."""
        u = self._user_index.get_indexer(pd.Index(np.asarray(user_ids).astype(str)))
        i = self._item_index.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
        return (np.where(u < 0, self.spec.num_users - 1, u).astype(np.int64),
                np.where(i < 0, self.spec.num_items - 1, i).astype(np.int64))

    def pair_batches(self, user_ids: Sequence, item_ids: Sequence,
                     batch_size: int = 4096) -> Iterator[dict[str, torch.Tensor]]:
        """Batches (no labels) for original id pairs, in order; unknown ids fall back."""
        u = self._user_index.get_indexer(pd.Index(np.asarray(user_ids).astype(str)))
        i = self._item_index.get_indexer(pd.Index(np.asarray(item_ids).astype(str)))
        users, items = self.index_ids(user_ids, item_ids)
        for begin in range(0, len(users), batch_size):
            sl = slice(begin, begin + batch_size)
            yield self._assemble({"user": users[sl], "item": items[sl]},
                                 unknown_user=u[sl] < 0, unknown_item=i[sl] < 0)

    # ------------------------------------------------------------------ assembly

    def _split(self, split: str) -> dict[str, np.ndarray]:
        try:
            return self.splits[split]
        except KeyError:
            raise MgoeError(f"no split {split!r}; this source has {', '.join(self.splits)}") from None

    def _assemble(self, rows: dict[str, np.ndarray], unknown_user: np.ndarray | None = None,
                  unknown_item: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        spec = self.spec
        n = len(rows["user"])
        graphs = len(spec.graphs)
        ku, ki = spec.num_user_macro, spec.num_item_macro
        neutral = {
            "user_features": lambda: np.zeros((n, len(spec.user_feature_sizes)), np.int64),
            "item_features": lambda: np.zeros((n, len(spec.item_feature_sizes)), np.int64),
            "context_features": lambda: np.zeros((n, len(spec.context_feature_sizes)), np.int64),
            "user_macro": lambda: np.full(n, ku - 1, np.int64),
            "item_macro": lambda: np.full(n, ki - 1, np.int64),
            "user_first": lambda: np.zeros((n, graphs, ki), np.float32),
            "user_second": lambda: np.zeros((n, graphs, ku), np.float32),
            "item_first": lambda: np.zeros((n, graphs, ku), np.float32),
            "item_second": lambda: np.zeros((n, graphs, ki), np.float32),
        }
        keys = ["user_features", "item_features", "context_features", "user_macro", "item_macro"]
        if spec.has_macro:
            keys += ["user_first", "user_second", "item_first", "item_second"]
        batch = {"user": rows["user"], "item": rows["item"]}
        if "labels" in rows:
            batch["labels"] = rows["labels"]
        for key in keys:
            table, index, unknown = ((self.user_table, rows["user"], unknown_user)
                                     if key.startswith("user") else
                                     (self.item_table, rows["item"], unknown_item))
            if key in rows:
                value = rows[key]
            elif key in table:
                value = table[key][index]
                if unknown is not None and unknown.any():
                    value = value.copy()
                    value[unknown] = neutral[key]()[unknown]
            else:
                value = neutral[key]()
            batch[key] = value
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path) -> Path:
        """Write the source to ``directory`` (atomically); returns the path."""
        directory = Path(directory)
        arrays: dict[str, np.ndarray] = {}
        for name, rows in self.splits.items():
            for key, value in rows.items():
                arrays[f"split/{name}/{key}"] = np.ascontiguousarray(value)
        for key, value in self.user_table.items():
            arrays[f"user_table/{key}"] = np.ascontiguousarray(value)
        for key, value in self.item_table.items():
            arrays[f"item_table/{key}"] = np.ascontiguousarray(value)
        with atomic_directory(directory) as tmp:
            save_file(arrays, str(tmp / "arrays.safetensors"))
            (tmp / "source.json").write_text(json.dumps({
                "kind": self.kind, "spec": asdict(self.spec), "splits": list(self.splits),
                "user_ids": self.user_ids, "item_ids": self.item_ids,
            }) + "\n")
        self.data_dir = directory
        return directory

    @classmethod
    def open(cls, directory: str | Path, graph_dir: str | Path | None = None) -> TensorBatchSource:
        """Reopen a source written by :meth:`save` (``graph_dir`` is accepted and ignored)."""
        directory = Path(directory)
        if not (directory / "source.json").is_file() or not is_complete(directory):
            raise MgoeError(f"{directory} is not a complete saved TensorBatchSource")
        meta = json.loads((directory / "source.json").read_text())
        arrays = load_file(str(directory / "arrays.safetensors"))
        splits: dict[str, dict[str, np.ndarray]] = {name: {} for name in meta["splits"]}
        user_table: dict[str, np.ndarray] = {}
        item_table: dict[str, np.ndarray] = {}
        for name, value in arrays.items():
            parts = name.split("/")
            if parts[0] == "split":
                splits[parts[1]][parts[2]] = value
            elif parts[0] == "user_table":
                user_table[parts[1]] = value
            else:
                item_table[parts[1]] = value
        return cls(ModelSpec(**meta["spec"]), splits, user_table=user_table,
                   item_table=item_table, user_ids=meta["user_ids"], item_ids=meta["item_ids"],
                   data_dir=directory)


def _as_array(key: str, value: np.ndarray | torch.Tensor | Sequence) -> np.ndarray:
    array = value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if key in _INT_KEYS:
        return array.astype(np.int64, copy=False)
    return array.astype(np.float32, copy=False)

"""The on-disk dataset format shared by every importer, the generator and the graph builder.

A prepared dataset is a directory::

    DIR/
      meta.json                 DatasetMeta (tasks in funnel order, features, split protocol, counts)
      users.parquet             user (int32, contiguous 0..U-1), user_id (original id, string),
                                one int32 column per user side feature (codes 1..V, 0 = missing)
      items.parquet             item, item_id, item side features (same encoding)
      vocab/<table>.<feature>.parquet   code (int32) -> value (string), for every side feature
      train/part-*.parquet      samples: user, item (int32 indices), [timestamp (int64)],
      valid/part-*.parquet      one int8 0/1 column per task, context feature codes (int32)
      test/part-*.parquet
      _COMPLETE                 written last; a directory without it was left by a killed run

Samples are rows of the split files. Positive rows (any task = 1) of ``train`` form the
*history graph* from which macro features are built; a training sample's own edge is removed
from its own features at lookup time (leave-one-out), and validation/test rows are never in
the graph, so no sample's label reaches its own features (METHOD.md §1).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from mgoe.errors import IncompleteDirectoryError, MgoeError
from mgoe.io import is_complete

FORMAT_VERSION = 1
SPLITS = ("train", "valid", "test")
USER_COL = "user"
ITEM_COL = "item"
TIME_COL = "timestamp"


@dataclass
class SplitInfo:
    rows: int = 0
    positives: dict[str, int] = field(default_factory=dict)


@dataclass
class DatasetMeta:
    """Metadata of a prepared dataset (``meta.json``)."""

    name: str
    tasks: list[str]
    """Task names in funnel order: shallowest first, most important (deepest) last."""
    negatives: Literal["real", "sampled"]
    """``real``: rows with all-zero labels are logged impressions; ``sampled``: drawn by us."""
    num_users: int
    num_items: int
    user_features: dict[str, int] = field(default_factory=dict)
    """Side feature name -> vocabulary size including the 0 'missing' code."""
    item_features: dict[str, int] = field(default_factory=dict)
    context_features: dict[str, int] = field(default_factory=dict)
    has_timestamp: bool = False
    has_graph: bool = True
    """False for tabular multi-task data (Census, Adult): no user-item graph to build."""
    split_protocol: str = ""
    history: str = "train"
    """Which split's positive rows form the history graph for macro features."""
    splits: dict[str, SplitInfo] = field(default_factory=dict)
    source: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> DatasetMeta:
        obj = dict(obj)
        obj["splits"] = {k: SplitInfo(**v) for k, v in obj.get("splits", {}).items()}
        return cls(**obj)


class Dataset:
    """Read access to a prepared dataset directory.

    >>> ds = Dataset.open("data/tmall")            # doctest: +SKIP
    >>> ds.meta.tasks, ds.read_split("train").shape  # doctest: +SKIP
    """

    def __init__(self, root: Path, meta: DatasetMeta) -> None:
        self.root = root
        self.meta = meta

    @classmethod
    def open(cls, root: str | Path) -> Dataset:
        root = Path(root)
        if not root.is_dir():
            raise MgoeError(f"{root}: no such dataset directory")
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise IncompleteDirectoryError(f"{root}: not an mgoe dataset (no meta.json)")
        if not is_complete(root):
            raise IncompleteDirectoryError(
                f"{root}: incomplete dataset directory (no _COMPLETE marker; "
                "it was left by an interrupted run) - prepare it again"
            )
        try:
            meta = DatasetMeta.from_json(json.loads(meta_path.read_text()))
        except (ValueError, TypeError) as exc:
            raise MgoeError(f"{meta_path}: unreadable dataset metadata ({exc})") from None
        if meta.format_version != FORMAT_VERSION:
            raise MgoeError(
                f"{meta_path}: format_version {meta.format_version}, this mgoe reads {FORMAT_VERSION}"
            )
        return cls(root, meta)

    @property
    def tasks(self) -> list[str]:
        return self.meta.tasks

    def split_path(self, split: str) -> Path:
        if split not in SPLITS:
            raise MgoeError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        path = self.root / split
        if not path.is_dir() or not any(path.glob("*.parquet")):
            raise MgoeError(f"{self.root}: dataset has no {split!r} split")
        return path

    def split_files(self, split: str) -> list[Path]:
        return sorted(self.split_path(split).glob("*.parquet"))

    def split_dataset(self, split: str) -> pads.Dataset:
        return pads.dataset([str(p) for p in self.split_files(split)], format="parquet")

    def read_split(self, split: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read a whole split into memory (for data that fits; see :meth:`iter_split`)."""
        table = self.split_dataset(split).to_table(columns=columns)
        return table.to_pandas()

    def iter_split(
        self, split: str, columns: list[str] | None = None, batch_rows: int = 1 << 20
    ) -> Iterator[pa.RecordBatch]:
        """Stream a split in record batches of at most ``batch_rows`` rows (bounded memory)."""
        yield from self.split_dataset(split).to_batches(columns=columns, batch_size=batch_rows)

    def users(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "users.parquet")

    def items(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "items.parquet")

    def vocab(self, table: str, feature: str) -> pd.DataFrame:
        return pd.read_parquet(self.root / "vocab" / f"{table}.{feature}.parquet")

    def user_ids(self) -> np.ndarray:
        """Original user ids indexed by contiguous user index."""
        return pq.read_table(self.root / "users.parquet", columns=["user_id"])["user_id"].to_numpy(
            zero_copy_only=False
        )

    def item_ids(self) -> np.ndarray:
        return pq.read_table(self.root / "items.parquet", columns=["item_id"])["item_id"].to_numpy(
            zero_copy_only=False
        )

    def info(self) -> dict:
        """The summary printed by ``mgoe data info --json``."""
        return {
            "users": self.meta.num_users,
            "items": self.meta.num_items,
            "tasks": list(self.meta.tasks),
            "splits": {
                name: {"rows": s.rows, "positives": dict(s.positives)}
                for name, s in self.meta.splits.items()
            },
        }

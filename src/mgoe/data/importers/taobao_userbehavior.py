"""Taobao UserBehavior (Alibaba Tianchi dataId 649): implicit multi-behaviour e-commerce logs.

Input: ``UserBehavior.csv`` (comma-separated, no header: user_id, item_id, category_id,
behavior_type, timestamp in unix seconds; behavior_type one of pv, fav, cart, buy), or a folder
holding it (or several CSVs in this format).

Tasks in funnel order: pv, fav, cart, buy. Each log row marks its behaviour; prepare merges the
rows of a (user, item) pair into one sample with the behaviours OR-ed and the earliest
timestamp, so a pair with fav/cart/buy but no pv row still counts for those tasks. Implicit
feedback: negatives are sampled unobserved pairs. Default split: by time. Item feature:
``category_id`` (categorical).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import files_matching, read_csv, require_path
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["pv", "fav", "cart", "buy"]
COLUMNS = ["user_id", "item_id", "category_id", "behavior_type", "timestamp"]


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    files = files_matching(path, ["*.csv"]) if path.is_dir() else [path]
    if not files:
        raise MgoeError(f"{path}: no UserBehavior CSV in this folder")
    frames = [_read(f) for f in files]
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    behavior = data["behavior_type"]
    interactions = pd.DataFrame({"user_id": data["user_id"], "item_id": data["item_id"]})
    for task in TASKS:
        interactions[task] = (behavior == task).to_numpy(np.int8)
    interactions["timestamp"] = data["timestamp"]
    return RawDataset(
        name="taobao-userbehavior",
        interactions=interactions,
        tasks=TASKS,
        negatives="sampled",
        item_features=data[["item_id", "category_id"]],
        source=", ".join(str(f) for f in files),
        default_split="time",
    )


def _read(path: Path) -> pd.DataFrame:
    dtypes = {"user_id": np.int64, "item_id": np.int64, "category_id": np.int64,
              "behavior_type": "category", "timestamp": np.int64}
    head = read_csv(path, header=None, dtype=str, nrows=5)
    if head.shape[1] != len(COLUMNS):
        raise MgoeError(
            f"{path}: expected {len(COLUMNS)} comma-separated fields per line "
            f"({', '.join(COLUMNS)}), found {head.shape[1]}"
        )
    try:  # fast path: the documented types
        frame = pd.read_csv(path, header=None, names=COLUMNS, dtype=dtypes)
    except (ValueError, pd.errors.ParserError):
        frame = read_csv(path, header=None, names=COLUMNS, dtype=str, keep_default_na=False)
        for col in ("user_id", "item_id", "category_id", "timestamp"):
            bad = pd.to_numeric(frame[col], errors="coerce").isna().to_numpy()
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                value = frame[col].iloc[row]
                what = "a missing value" if value == "" else f"{value!r}, expected an integer"
                raise MgoeError(f"{path}: column {col!r} has {what} (line {row + 1})") from None
        raise MgoeError(f"{path}: cannot parse as UserBehavior CSV ({', '.join(COLUMNS)})") from None
    bad = ~frame["behavior_type"].isin(TASKS).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MgoeError(
            f"{path}: column 'behavior_type' must be one of {', '.join(TASKS)}, found "
            f"{frame['behavior_type'].iloc[row]!r} (line {row + 1})"
        )
    return frame

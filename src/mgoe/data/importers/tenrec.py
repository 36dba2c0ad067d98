"""Tenrec (Tencent, NeurIPS'22 datasets track), the QK-video multi-feedback log.

Input: the official ``QK-video.csv`` (comma-separated with a header: user_id, item_id, click,
follow, like, share, video_category, watching_times, gender, age), or a folder holding it (a
folder's ``QK-video*.csv`` file, else its only CSV).

Tasks in funnel order: click, like, share, follow. Every row is a logged impression, clicked or
not (negatives "real"). The file has no timestamps, so the default split is per-user random
(80/10/10). User features: gender, age (codes as given); item feature: video_category. All
categorical. ``watching_times`` is an outcome of the click, not a feature, and is not used.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mgoe.data.importers._common import (
    binary_labels,
    files_matching,
    int_ids,
    read_csv,
    require_path,
)
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["click", "like", "share", "follow"]
USER_FEATURES = ["gender", "age"]
ITEM_FEATURES = ["video_category"]


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    if path.is_dir():
        files = files_matching(path, ["QK-video*.csv"]) or files_matching(path, ["*.csv"])
        if len(files) != 1:
            found = ", ".join(f.name for f in files) or "none"
            raise MgoeError(f"{path}: expected the Tenrec QK-video.csv in this folder (CSV files: {found})")
        path = files[0]
    columns = ["user_id", "item_id", *TASKS, *USER_FEATURES, *ITEM_FEATURES]
    data = read_csv(
        path, required=columns, dtype={c: str for c in USER_FEATURES + ITEM_FEATURES},
    )
    if len(data) == 0:
        raise MgoeError(f"{path}: empty file (header only)")
    interactions = pd.DataFrame({
        "user_id": int_ids(data["user_id"], path, "user_id", 2),
        "item_id": int_ids(data["item_id"], path, "item_id", 2),
    })
    for task in TASKS:
        interactions[task] = binary_labels(data[task], path, task, 2)
    user_features = data[USER_FEATURES].assign(user_id=interactions["user_id"].to_numpy())
    item_features = data[ITEM_FEATURES].assign(item_id=interactions["item_id"].to_numpy())
    return RawDataset(
        name="tenrec",
        interactions=interactions,
        tasks=TASKS,
        negatives="real",
        user_features=user_features,
        item_features=item_features,
        source=str(path),
        default_split="random",
    )


"""ByteDance / Douyin short-video logs (ICME 2019 Grand Challenge, track 2).

Input: the tab-separated file without header (``final_track2_train.txt`` or DeepCTR's
``byterec_sample.txt``), or a folder holding one ``*.txt`` / ``*.tsv`` file (or several, all
in this format). Columns, in order: uid, user_city, item_id, author_id, item_city, channel,
finish, like, music_id, device, time, duration_time.

Tasks in funnel order: finish (watched to the end), like. Every row is a logged impression
(negatives "real"). ``user_id`` = uid, ``item_id`` = item_id, ``timestamp`` = time as given
(the challenge's anonymised time unit, monotone; default split: by time). User feature:
user_city; item features: author_id, item_city, music_id, duration_time; context features:
channel, device. All categorical (``-1`` = unknown in the source, kept as its own value).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import binary_labels, files_matching, read_csv, require_path
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

COLUMNS = [
    "uid", "user_city", "item_id", "author_id", "item_city", "channel", "finish", "like",
    "music_id", "device", "time", "duration_time",
]
TASKS = ["finish", "like"]
USER_FEATURES = ["user_city"]
ITEM_FEATURES = ["author_id", "item_city", "music_id", "duration_time"]
CONTEXT_FEATURES = ["channel", "device"]


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    files = files_matching(path, ["*.txt", "*.tsv"]) if path.is_dir() else [path]
    if not files:
        raise MgoeError(f"{path}: no ICME 2019 track2 file (*.txt, tab-separated) in this folder")
    frames = [_read(f) for f in files]
    data = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    interactions = data[["uid", "item_id", *TASKS, "time", *CONTEXT_FEATURES]].rename(
        columns={"uid": "user_id", "time": "timestamp"}
    )
    return RawDataset(
        name="byterec",
        interactions=interactions,
        tasks=TASKS,
        negatives="real",
        user_features=data[["uid", *USER_FEATURES]].rename(columns={"uid": "user_id"}),
        item_features=data[["item_id", *ITEM_FEATURES]],
        context_features=CONTEXT_FEATURES,
        source=", ".join(str(f) for f in files),
    )


def _read(path: Path) -> pd.DataFrame:
    head = read_csv(path, sep="\t", header=None, dtype=str, nrows=5)
    if head.shape[1] != len(COLUMNS):
        raise MgoeError(
            f"{path}: expected {len(COLUMNS)} tab-separated fields per line "
            f"({', '.join(COLUMNS)}), found {head.shape[1]}"
        )
    try:  # fast path: every field of the format is an integer
        frame = pd.read_csv(path, sep="\t", header=None, names=COLUMNS, dtype=np.int64)
    except (ValueError, pd.errors.ParserError):
        raise _diagnose(path) from None
    for task in TASKS:
        frame[task] = binary_labels(frame[task], path, task, 1)
    return frame


def _diagnose(path: Path) -> MgoeError:
    """Re-read as text to name the first bad field (line, column, value)."""
    frame = read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    if frame.shape[1] != len(COLUMNS):
        return MgoeError(f"{path}: lines have differing numbers of fields (expected {len(COLUMNS)})")
    frame.columns = COLUMNS
    for col in COLUMNS:
        bad = pd.to_numeric(frame[col], errors="coerce").isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = frame[col].iloc[row]
            what = "a missing value" if value == "" else f"{value!r}, expected an integer"
            return MgoeError(f"{path}: column {col!r} has {what} (line {row + 1})")
    return MgoeError(f"{path}: cannot parse as ICME 2019 track2 (tab-separated integers)")

"""KuaiRand (Kuaishou short-video logs, CIKM'22): real impressions with several feedback labels.

Input: a folder with the official log CSVs ``log_*.csv`` (e.g. KuaiRand-Pure's
``log_standard_4_08_to_4_21_pure.csv``; when there is no ``log_*.csv``, every other CSV that is
not a feature table is read as a log) plus, optionally, ``user_features*.csv`` and
``video_features_basic*.csv``; or a single log CSV. Log columns: user_id, video_id, date,
hourmin, time_ms, is_click, is_like, is_follow, is_comment, is_forward, is_hate, long_view,
play_time_ms, duration_ms, profile_stay_time, comment_stay_time, is_profile_enter, is_rand, tab.

Tasks, in funnel order, are those present among is_click, long_view, is_like, is_comment,
is_follow, is_forward, named click, long_view, like, comment, follow, forward. When
``long_view`` is absent but play_time_ms and duration_ms exist it is derived: a video of at most
18 s is a long view when played to the end (play >= duration), a longer one when played >= 18 s.
Every log row is a real impression (negatives "real"). ``timestamp`` = time_ms // 1000 when
present (default split: by time), else no timestamp (per-user random split). ``tab`` (the
scenario) is a context feature.

Side features (categorical): from the feature tables when the folder has them, else from the
same columns when the log is already joined with them (e.g. the Scenario-Wise-Rec sample).
User: user_active_degree, is_live_streamer, is_video_author, follow_user_num_range,
fans_user_num_range, friend_user_num_range, register_days_range. Video: author_id, video_type,
upload_type, music_type, tag (the first tag of a comma-separated list).

``download``: not supported automatically (no published checksum to verify the archive
against); the error says where to get it: https://zenodo.org/records/10439422 (KuaiRand-Pure).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
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

# (log column, task name) in funnel order.
TASK_COLUMNS = [
    ("is_click", "click"),
    ("long_view", "long_view"),
    ("is_like", "like"),
    ("is_comment", "comment"),
    ("is_follow", "follow"),
    ("is_forward", "forward"),
]
USER_FEATURES = [
    "user_active_degree", "is_live_streamer", "is_video_author", "follow_user_num_range",
    "fans_user_num_range", "friend_user_num_range", "register_days_range",
]
VIDEO_FEATURES = ["author_id", "video_type", "upload_type", "music_type", "tag"]
CONTEXT_FEATURES = ["tab"]
LONG_VIEW_MS = 18_000
DOWNLOAD_URL = "https://zenodo.org/records/10439422/files/KuaiRand-Pure.tar.gz"
USER_TABLES = ["user_features*.csv"]
VIDEO_TABLES = ["video_features_basic*.csv"]


def load(input_path: str | Path, download: bool = False, **_: object) -> RawDataset:
    path = Path(input_path)
    if not path.exists() and download:
        raise MgoeError(
            f"{path}: automatic download of KuaiRand is not supported (no published checksum to "
            f"verify it); download {DOWNLOAD_URL}, extract it and pass --input KuaiRand-Pure/data"
        )
    path = require_path(path)
    user_table = video_table = None
    if path.is_dir():
        logs = files_matching(path, ["log_*.csv"])
        user_tables = files_matching(path, USER_TABLES)
        video_tables = files_matching(path, VIDEO_TABLES + ["video_features*.csv"])
        if not logs:
            logs = [p for p in files_matching(path, ["*.csv"]) if p not in user_tables + video_tables]
        if not logs:
            hint = f"; download {DOWNLOAD_URL}" if download else ""
            raise MgoeError(f"{path}: no KuaiRand log file (log_*.csv) in this folder{hint}")
        user_table = user_tables[:1]
        video_table = files_matching(path, VIDEO_TABLES)[:1]
    else:
        logs = [path]

    frames = [_read_log(p) for p in logs]
    log = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    tasks = [name for col, name in TASK_COLUMNS if name in log.columns]
    if not tasks:
        raise MgoeError(
            f"{logs[0]}: no KuaiRand label column (is_click, long_view, is_like, ...) and no "
            "play_time_ms/duration_ms to derive long_view from"
        )

    interactions = log[["user_id", "item_id", *tasks]].copy()
    if "timestamp" in log.columns:
        interactions["timestamp"] = log["timestamp"]
    context = [c for c in CONTEXT_FEATURES if c in log.columns]
    for col in context:
        interactions[col] = log[col].astype("string")

    if user_table:
        user_features = _feature_table(user_table[0], "user_id", USER_FEATURES)
    else:
        user_features = _embedded(log, "user_id", USER_FEATURES)
    if video_table:
        item_features = _feature_table(video_table[0], "video_id", VIDEO_FEATURES)
    else:
        item_features = _embedded(log, "item_id", VIDEO_FEATURES)
    if item_features is not None:
        item_features = item_features.rename(columns={"video_id": "item_id"})
        if "tag" in item_features.columns:
            item_features["tag"] = item_features["tag"].astype("string").str.split(",").str[0]

    return RawDataset(
        name="kuairand",
        interactions=interactions,
        tasks=tasks,
        negatives="real",
        user_features=user_features,
        item_features=item_features,
        context_features=context,
        source=", ".join(str(p) for p in logs),
    )


def _read_log(path: Path) -> pd.DataFrame:
    frame = read_csv(path, required=["user_id", "video_id"], low_memory=False)
    out = pd.DataFrame({
        "user_id": int_ids(frame["user_id"], path, "user_id", 2),
        "item_id": int_ids(frame["video_id"], path, "video_id", 2),
    })
    for col, name in TASK_COLUMNS:
        if col in frame.columns:
            out[name] = binary_labels(frame[col], path, col, 2)
    if "long_view" not in out.columns and {"play_time_ms", "duration_ms"} <= set(frame.columns):
        play = pd.to_numeric(frame["play_time_ms"], errors="coerce").to_numpy(np.float64)
        duration = pd.to_numeric(frame["duration_ms"], errors="coerce").to_numpy(np.float64)
        long_view = np.where(duration <= LONG_VIEW_MS, play >= duration, play >= LONG_VIEW_MS)
        out["long_view"] = long_view.astype(np.int8)  # missing play/duration -> 0
        # keep funnel order: long_view right after click
        order = [name for _, name in TASK_COLUMNS if name in out.columns]
        out = out[["user_id", "item_id", *order]]
    if "time_ms" in frame.columns:
        ms = int_ids(frame["time_ms"], path, "time_ms", 2)
        out["timestamp"] = ms // 1000
    for col in CONTEXT_FEATURES + USER_FEATURES + VIDEO_FEATURES:
        if col in frame.columns and col not in out.columns:
            out[col] = frame[col].to_numpy()
    return out


def _feature_table(path: Path, id_col: str, wanted: list[str]) -> pd.DataFrame | None:
    table = read_csv(path, required=[id_col], dtype=str, keep_default_na=False, na_values=[""])
    columns = [c for c in wanted if c in table.columns]
    if not columns:
        return None
    ids = int_ids(table[id_col], path, id_col, 2)
    out = table[columns].copy()
    out.insert(0, id_col, ids)
    return out


def _embedded(log: pd.DataFrame, id_col: str, wanted: list[str]) -> pd.DataFrame | None:
    columns = [c for c in wanted if c in log.columns]
    if not columns:
        return None
    return log[[id_col, *columns]].drop_duplicates(id_col, keep="first").reset_index(drop=True)

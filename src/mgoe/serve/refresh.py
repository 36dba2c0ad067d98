"""Batch refresh: fold the serving event log into a new prepared dataset (``mgoe data add-events``).

Online events update first-order macro features only; macro assignments, second-order
features and the model itself are refreshed in batch. The cycle::

    mgoe export RUN --output ART                      # artifact of the current model
    mgoe serve ART --event-log events.jsonl           # events -> first-order updates + log
    mgoe data add-events DATA --events events.jsonl --output DATA2
    mgoe graph build --data DATA2 --output GRAPH2     # new clusters, 1st and 2nd order
    mgoe train --data DATA2 --graph GRAPH2 --output RUN2   # (or keep the model, see below)
    mgoe export RUN2 --output ART2
    curl -X POST localhost:8000/admin/reload -d '{"artifact": "ART2"}'

The reload replays the whole event log onto ART2; since ART2's history already contains those
events (same pairs, same task bits) and events have OR semantics, the replay changes nothing
there — only events that arrived after ``add-events`` ran are applied on top.

What :func:`add_events` writes: DATA2 is DATA with

* the logged events as extra **train** rows, one per distinct (user, item) pair of the log with
  its labels OR-ed over the log (the same OR the server applied; all-zero events stay as
  negative rows), timestamp = the first event's server time, context codes 0 (missing), in an
  extra part file ``train/part-events-NNNNN.parquet`` (the first free number);
* users and items first seen in the log appended to ``users.parquet`` / ``items.parquet`` with
  the next indices and side-feature codes 0 (missing); existing indices never change;
* ``meta.json`` with the new counts, the train split's rows and positives, and a note in
  ``source``; valid/test and vocabularies copied unchanged; ``added_events.json`` describing
  what was added.

A model keeps its meaning only for the ids and macro nodes it was trained on: after a graph
rebuild the macro nodes are new clusters, so retrain (``mgoe train``) before exporting.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mgoe.data.schema import ITEM_COL, SPLITS, TIME_COL, USER_COL, Dataset, SplitInfo
from mgoe.errors import MgoeError
from mgoe.io import atomic_directory, write_json_atomic
from mgoe.serve.events import read_events

EVENTS_PART = "part-events-{:05d}.parquet"
"""Name of the added part file; numbered on, so refreshing a refreshed dataset keeps both."""


def _extend_table(table: pd.DataFrame, index_col: str, id_col: str, new_ids: list[str]) -> pd.DataFrame:
    if not new_ids:
        return table
    start = len(table)
    extra = pd.DataFrame({index_col: np.arange(start, start + len(new_ids), dtype=np.int32), id_col: new_ids})
    for col in table.columns:
        if col not in (index_col, id_col):
            extra[col] = np.zeros(len(new_ids), dtype=table[col].dtype)
    out = pd.concat([table, extra[table.columns]], ignore_index=True)
    for col in table.columns:
        out[col] = out[col].astype(table[col].dtype)
    return out


def add_events(data_dir: str | Path, events_log: str | Path, output: str | Path) -> dict[str, Any]:
    """Write DATA2 = ``data_dir`` + the events of ``events_log`` as train rows (see above).

    Returns a summary: events read, rows added, new users and items, positives per task.
    """
    ds = Dataset.open(data_dir)
    meta = ds.meta
    tasks = list(meta.tasks)
    events_log = Path(events_log)
    if not events_log.is_file():
        raise MgoeError(f"{events_log}: no such event log")
    timed, _ = read_events(events_log, with_time=True)
    if not timed:
        raise MgoeError(f"{events_log}: the event log holds no events")
    unknown = sorted({t for _, e in timed for t in e.labels} - set(tasks))
    if unknown:
        raise MgoeError(
            f"{events_log}: task(s) {', '.join(map(repr, unknown))} are not tasks of {data_dir} ({', '.join(tasks)})"
        )
    frame = pd.DataFrame({
        "user_id": [e.user_id for _, e in timed],
        "item_id": [e.item_id for _, e in timed],
        TIME_COL: np.array([int(ts) for ts, _ in timed], dtype=np.int64),
        **{t: np.array([1 if e.labels.get(t, 0) else 0 for _, e in timed], dtype=np.int8) for t in tasks},
    })
    pairs = frame.groupby(["user_id", "item_id"], sort=False, as_index=False).agg(
        {TIME_COL: "min", **dict.fromkeys(tasks, "max")}
    )

    users = ds.users()
    items = ds.items()
    user_index = pd.Index(users["user_id"].astype(str))
    item_index = pd.Index(items["item_id"].astype(str))
    new_users = [u for u in pd.unique(pairs["user_id"]) if u not in user_index]
    new_items = [i for i in pd.unique(pairs["item_id"]) if i not in item_index]
    users = _extend_table(users, USER_COL, "user_id", new_users)
    items = _extend_table(items, ITEM_COL, "item_id", new_items)
    user_codes = pd.Index(users["user_id"].astype(str)).get_indexer(pairs["user_id"])
    item_codes = pd.Index(items["item_id"].astype(str)).get_indexer(pairs["item_id"])

    train_files = ds.split_files("train")
    schema = pq.read_schema(train_files[0]).remove_metadata()
    columns: dict[str, np.ndarray] = {
        USER_COL: user_codes.astype(np.int32),
        ITEM_COL: item_codes.astype(np.int32),
        TIME_COL: pairs[TIME_COL].to_numpy(np.int64),
        **{t: pairs[t].to_numpy(np.int8) for t in tasks},
    }
    arrays = []
    for f in schema:
        if f.name in columns:
            arrays.append(pa.array(columns[f.name]).cast(f.type))
        else:  # context features: 0 = missing
            arrays.append(pa.array(np.zeros(len(pairs), dtype=np.int64)).cast(f.type))
    added = pa.Table.from_arrays(arrays, schema=schema)

    meta.num_users = len(users)
    meta.num_items = len(items)
    train = meta.splits.get("train", SplitInfo())
    positives = {t: int(pairs[t].sum()) for t in tasks}
    meta.splits["train"] = SplitInfo(
        rows=train.rows + len(pairs),
        positives={t: train.positives.get(t, 0) + positives[t] for t in tasks},
    )
    note = f"+ {len(timed)} logged events as {len(pairs)} train rows from {events_log} (mgoe data add-events)"
    meta.source = f"{meta.source}; {note}" if meta.source else note
    summary = {
        "data_dir": str(Path(data_dir).resolve()),
        "events_log": str(events_log.resolve()),
        "events": len(timed),
        "rows_added": len(pairs),
        "new_users": len(new_users),
        "new_items": len(new_items),
        "positives_added": positives,
        "num_users": meta.num_users,
        "num_items": meta.num_items,
    }
    with atomic_directory(output) as tmp:
        pq.write_table(pa.Table.from_pandas(users, preserve_index=False), tmp / "users.parquet")
        pq.write_table(pa.Table.from_pandas(items, preserve_index=False), tmp / "items.parquet")
        if (ds.root / "vocab").is_dir():
            shutil.copytree(ds.root / "vocab", tmp / "vocab")
        for split in SPLITS:
            (tmp / split).mkdir()
            for path in sorted((ds.root / split).glob("*.parquet")):
                shutil.copyfile(path, tmp / split / path.name)
        n = 0
        while (tmp / "train" / EVENTS_PART.format(n)).exists():
            n += 1
        pq.write_table(added, tmp / "train" / EVENTS_PART.format(n))
        write_json_atomic(tmp / "meta.json", meta.to_json())
        write_json_atomic(tmp / "added_events.json", summary)
    return summary

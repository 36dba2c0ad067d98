"""Ali-CCP (Alibaba Click and Conversion Prediction) in the torch-rechub processed CSV layout.

Input: a folder with ``ali_ccp_train*.csv``, ``ali_ccp_val*.csv`` and ``ali_ccp_test*.csv``
(the full processed files or the ``*_sample.csv`` ones), or a single such CSV. Columns:
``click``, ``purchase`` (labels), label-encoded sparse fields named by their Ali-CCP field id
(101 user id, 121-129 user profile, 205 item id, 206 category, 207 shop, 210 intention node,
216 brand, 301 scenario, 508/509/702/853 user-item cross features) and dense columns
(``109_14`` ..., ``D508`` ...).

Tasks in funnel order: click, purchase (purchase = click-through conversion, CTCVR). Every row
is a logged impression (negatives "real"). ``user_id`` = field 101, ``item_id`` = field 205.
User features: fields 121-129 (those present); item features: 206, 207, 210, 216; context
features: 301, 508, 509, 702, 853. All categorical (``f<field>`` names, e.g. ``f206``). The
dense columns are ignored (the models take categorical inputs): ``D508`` .. ``D853`` are the
weights of the cross features already used as categorical ids, and the user-history fields
``109_14`` .. ``150_14`` and their ``D*`` weights hold one constant value in every row of the
samples (which hold a single user).

Split: given by the file (train / val -> valid / test) in a ``split`` column; a single file
whose name says none of those gets no split column (prepare's default applies).
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
    split_from_name,
)
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["click", "purchase"]
USER_FIELD, ITEM_FIELD = "101", "205"
USER_FIELDS = ["121", "122", "124", "125", "126", "127", "128", "129"]
ITEM_FIELDS = ["206", "207", "210", "216"]
CONTEXT_FIELDS = ["301", "508", "509", "702", "853"]


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    if path.is_dir():
        files = files_matching(path, ["*train*.csv", "*val*.csv", "*test*.csv"])
        if not files:
            raise MgoeError(f"{path}: no Ali-CCP CSV (ali_ccp_train*.csv, ali_ccp_val*.csv, ali_ccp_test*.csv)")
    else:
        files = [path]

    frames = []
    for file in files:
        frame = _read(file)
        split = split_from_name(file)
        if split is not None:
            frame["split"] = split
        frames.append(frame)
    if len({"split" in f.columns for f in frames}) > 1:
        named = [str(f) for f in files if split_from_name(f) is None]
        raise MgoeError(f"{named[0]}: cannot tell this file's split (train/val/test) from its name")
    interactions = pd.concat(frames, ignore_index=True)

    user_cols = [c for c in USER_FIELDS if c in interactions.columns]
    item_cols = [c for c in ITEM_FIELDS if c in interactions.columns]
    context = [c for c in CONTEXT_FIELDS if c in interactions.columns]
    rename = {c: f"f{c}" for c in user_cols + item_cols + context}
    interactions = interactions.rename(columns=rename)
    user_features = item_features = None
    if user_cols:
        user_features = interactions[["user_id", *(rename[c] for c in user_cols)]]
    if item_cols:
        item_features = interactions[["item_id", *(rename[c] for c in item_cols)]]
    keep = ["user_id", "item_id", *TASKS, *(rename[c] for c in context)]
    if "split" in interactions.columns:
        keep.append("split")
    return RawDataset(
        name="aliccp",
        interactions=interactions[keep],
        tasks=TASKS,
        negatives="real",
        user_features=user_features,
        item_features=item_features,
        context_features=[rename[c] for c in context],
        has_graph=True,
        source=", ".join(str(f) for f in files),
    )


def _read(path: Path) -> pd.DataFrame:
    sparse = [USER_FIELD, ITEM_FIELD, *USER_FIELDS, *ITEM_FIELDS, *CONTEXT_FIELDS]
    frame = read_csv(path, required=[*TASKS, USER_FIELD, ITEM_FIELD], dtype={c: str for c in sparse})
    out = pd.DataFrame({
        "user_id": int_ids(frame[USER_FIELD], path, USER_FIELD, 2),
        "item_id": int_ids(frame[ITEM_FIELD], path, ITEM_FIELD, 2),
    })
    for task in TASKS:
        out[task] = binary_labels(frame[task], path, task, 2)
    for col in USER_FIELDS + ITEM_FIELDS + CONTEXT_FIELDS:
        if col in frame.columns:
            out[col] = frame[col].to_numpy()
    return out

"""AliExpress search logs (Tianchi dataId 74690) in the torch-rechub CSV layout.

Input: a folder with ``aliexpress_train*.csv`` and ``aliexpress_test*.csv`` (the per-country
``*_train.csv`` / ``*_test.csv`` files or the ``*_sample.csv`` ones), or a single such CSV.
Columns: ``search_id``, ``categorical_1`` .. ``categorical_16``, ``numerical_1`` ..
``numerical_63``, ``click``, ``conversion``.

Tasks in funnel order: click, conversion. Every row is a logged impression (negatives "real").

The data has no user or item id (the categorical fields are anonymised user, item and query
attributes), so there is no user-item graph (``has_graph`` False). ``user_id`` = ``search_id``
(the search session: rows of one query share it, which keeps per-query grouping), ``item_id``
= the constant ``"0"`` (an item index that carries no information, as for the tabular census
data). The 16 categorical fields are context features; the 63 numerical fields are bucketised
into 10 quantile bins each (edges from the training rows only; a field with at most 10
distinct training values keeps its values) and added as context features ``numerical_<k>``.

Split: given by the file: train file -> train, test file -> test; valid is carved from the
train file deterministically: 10% of its search sessions drawn with a fixed seed (0), whole
sessions only, so a session never straddles train and valid. (The file order is not a time
order: the torch-rechub sample lists all its clicked rows first, so "the last 10% of rows"
would be a valid split without clicks.) A single file whose name says neither train nor test
gets no split column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import (
    binary_labels,
    files_matching,
    int_ids,
    quantile_bins,
    read_csv,
    require_path,
    split_from_name,
)
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["click", "conversion"]
VALID_FRACTION = 0.1
N_BINS = 10


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    if path.is_dir():
        files = files_matching(path, ["*train*.csv", "*test*.csv"])
        if not files:
            raise MgoeError(f"{path}: no AliExpress CSV (aliexpress_train*.csv, aliexpress_test*.csv)")
    else:
        files = [path]

    frames = []
    for file in files:
        frame = read_csv(file, required=["search_id", *TASKS])
        frame["search_id"] = int_ids(frame["search_id"], file, "search_id", 2)
        for task in TASKS:
            frame[task] = binary_labels(frame[task], file, task, 2)
        split = split_from_name(file)
        if split == "train":
            split = _carve_valid(frame["search_id"])
        frames.append((file, frame, split))
    has_split = {s is not None for _, _, s in frames}
    if len(has_split) > 1:
        unnamed = [str(f) for f, _, s in frames if s is None]
        raise MgoeError(f"{unnamed[0]}: cannot tell this file's split (train/test) from its name")

    columns = list(frames[0][1].columns)
    for file, frame, _ in frames[1:]:
        if list(frame.columns) != columns:
            differ = sorted(set(columns) ^ set(frame.columns)) or ["(order)"]
            raise MgoeError(f"{file}: columns differ from {frames[0][0]}: {', '.join(differ)}")
    data = pd.concat([f for _, f, _ in frames], ignore_index=True)
    where = ", ".join(str(f) for f, _, _ in frames)
    interactions = pd.DataFrame({
        "user_id": data["search_id"],
        "item_id": np.zeros(len(data), np.int64),
        **{task: data[task] for task in TASKS},
    })
    if has_split == {True}:
        interactions["split"] = np.concatenate(
            [np.broadcast_to(np.asarray(s, dtype=object), len(f)) for _, f, s in frames]
        )
        fit = interactions["split"].to_numpy() == "train"
    else:
        fit = None
    categorical = [c for c in columns if c.startswith("categorical_")]
    numerical = [c for c in columns if c.startswith("numerical_")]
    context = {c: data[c].astype("string") for c in categorical}
    context.update({c: quantile_bins(data[c], N_BINS, fit) for c in numerical})
    interactions = pd.concat([interactions, pd.DataFrame(context)], axis=1)
    return RawDataset(
        name="aliexpress",
        interactions=interactions,
        tasks=TASKS,
        negatives="real",
        context_features=categorical + numerical,
        has_graph=False,
        source=where,
    )


def _carve_valid(search_id: pd.Series) -> np.ndarray:
    """train / valid per row: a seeded random VALID_FRACTION of the sessions -> valid."""
    codes, uniques = pd.factorize(search_id, sort=True)
    n_valid = int(round(len(uniques) * VALID_FRACTION))
    chosen = np.zeros(len(uniques), bool)
    chosen[np.random.default_rng(0).permutation(len(uniques))[:n_valid]] = True
    return np.where(chosen[codes], "valid", "train").astype(object)

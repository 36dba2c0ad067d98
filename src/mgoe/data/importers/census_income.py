"""UCI Census-Income (KDD), the MMoE paper's tabular multi-task benchmark.

Input, either format, as a file or a folder:

* raw UCI files: ``census-income.data`` (training) and optionally ``census-income.test``,
  42 comma-separated fields, no header (also the ``.sample`` variant with a leading row-index
  column, 43 fields; told apart by the field count);
* torch-rechub's processed CSVs ``census_income_{train,val,test}*.csv`` (header row, 41
  columns, label-encoded categoricals and min-max scaled numerics).

A folder is read in this order of preference: ``census-income.data`` (+ ``census-income.test``),
else the processed ``census_income_*.csv`` files, else ``census-income.sample``.

Tasks in funnel order: ``never_married`` (marital status == "Never married"; the MMoE
auxiliary task) and ``income`` (income class "50000+.", i.e. > 50K; the main task, last). In the
processed files, whose marital status column is already binarised, it is taken as given. Every
row is a real example (negatives "real"). There are no users or items: ``user_id`` = the row
number (over all input files), ``item_id`` = the constant 0, and ``has_graph`` is False.

Features (context, categorical, names in snake_case): every column except the two label
columns and the instance weight. The continuous columns (age, wage per hour, capital gains,
capital losses, dividends from stocks, num persons worked for employer, weeks worked in year)
are bucketised into 10 quantile bins with edges from the training rows (a column with at most
10 distinct training values keeps its values). Note: "detailed household and family stat"
spells out "never marr" for some rows, as in the literature's setup (kept for comparability).

Split (always given, as a ``split`` column): processed files by name (train / val -> valid /
test); with both raw files, ``.data`` = train and ``.test`` halved at random (seed 0) into
valid and test as in the MMoE paper; a raw file alone (``.data`` without ``.test``, the
samples) is split 80/10/10 at random (seed 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import (
    SPLIT_NAMES,
    binary_labels,
    files_matching,
    quantile_bins,
    read_csv,
    require_path,
    row_split,
    split_from_name,
)
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

COLUMNS = [
    "age", "class of worker", "industry code", "occupation code", "education", "wage per hour",
    "enrolled in edu inst last wk", "marital status", "major industry code",
    "major occupation code", "race", "hispanic origin", "sex", "member of a labor union",
    "reason for unemployment", "full or part time employment stat", "capital gains",
    "capital losses", "divdends from stocks", "tax filer status", "region of previous residence",
    "state of previous residence", "detailed household and family stat",
    "detailed household summary in household", "migration code-change in msa",
    "migration code-change in reg", "migration code-move within reg",
    "live in this house 1 year ago", "migration prev res in sunbelt",
    "num persons worked for employer", "family members under 18", "country of birth father",
    "country of birth mother", "country of birth self", "citizenship",
    "own business or self employed", "fill inc questionnaire for veterans admin",
    "veterans benefits", "weeks worked in year", "year", "income",
]  # torch-rechub's names (its spelling "divdends"); raw files add "instance weight" at 24
RAW_COLUMNS = COLUMNS[:24] + ["instance weight"] + COLUMNS[24:]
NUMERIC = [
    "age", "wage per hour", "capital gains", "capital losses", "divdends from stocks",
    "num persons worked for employer", "weeks worked in year",
]
TASKS = ["never_married", "income"]
N_BINS = 10


def load(input_path: str | Path, **_: object) -> RawDataset:
    path = require_path(input_path)
    if path.is_dir():
        parts = _folder_parts(path)
    else:
        parts = [(path, None)]
    frames, formats = [], set()
    for file, split in parts:
        frame, fmt = _read(file)
        formats.add(fmt)
        if split is None and fmt == "processed":
            split = split_from_name(file)
            if split is None:
                raise MgoeError(f"{file}: cannot tell this file's split (train/val/test) from its name")
        frame["split"] = _split_column(file, len(frame), split)
        frames.append(frame)
    if len(formats) > 1:
        raise MgoeError(f"{path}: mixes raw UCI and processed census files")
    data = pd.concat(frames, ignore_index=True)

    interactions = pd.DataFrame({
        "user_id": np.arange(len(data), dtype=np.int64),
        "item_id": np.zeros(len(data), np.int64),
        "never_married": data.pop("never_married").to_numpy(np.int8),
        "income": data.pop("income").to_numpy(np.int8),
        "split": data.pop("split").to_numpy(),
    })
    fit = interactions["split"].to_numpy() == "train"
    features = {}
    for col in data.columns:
        name = _snake(col)
        features[name] = quantile_bins(data[col], N_BINS, fit) if col in NUMERIC else data[col]
    interactions = pd.concat([interactions, pd.DataFrame(features)], axis=1)
    return RawDataset(
        name="census-income",
        interactions=interactions,
        tasks=TASKS,
        negatives="real",
        context_features=list(features),
        has_graph=False,
        source=", ".join(str(f) for f, _ in parts),
        default_split="given",
    )


def _folder_parts(root: Path) -> list[tuple[Path, str | None]]:
    data, test = root / "census-income.data", root / "census-income.test"
    if data.is_file():
        if test.is_file():
            return [(data, "train"), (test, "valid+test")]
        return [(data, None)]
    processed = files_matching(root, ["census_income_*train*.csv", "census_income_*val*.csv",
                                      "census_income_*test*.csv"])
    if processed:
        return [(p, None) for p in processed]
    sample = root / "census-income.sample"
    if sample.is_file():
        return [(sample, None)]
    raise MgoeError(
        f"{root}: no census file (census-income.data, census_income_train*.csv or "
        "census-income.sample) in this folder"
    )


def _split_column(file: Path, n_rows: int, split: str | None) -> np.ndarray:
    if split in SPLIT_NAMES:
        return np.full(n_rows, split, dtype=object)
    if split == "valid+test":  # MMoE: the test file halved into validation and test
        return row_split(n_rows, (0.0, 0.5, 0.5), seed=0)
    return row_split(n_rows, (0.8, 0.1, 0.1), seed=0)


def _read(path: Path) -> tuple[pd.DataFrame, str]:
    first = read_csv(path, header=None, nrows=1, dtype=str)
    if str(first.iloc[0, 0]).strip() == "age":  # processed, with a header row
        frame = read_csv(path, required=COLUMNS)
        frame = frame[COLUMNS].copy()
        frame["never_married"] = binary_labels(frame.pop("marital status"), path, "marital status", 2)
        frame["income"] = binary_labels(frame.pop("income"), path, "income", 2)
        return frame, "processed"
    n_fields = first.shape[1]
    if n_fields not in (len(RAW_COLUMNS), len(RAW_COLUMNS) + 1):
        raise MgoeError(
            f"{path}: expected {len(RAW_COLUMNS)} comma-separated fields per line (raw UCI "
            f"census-income) or a header row starting with 'age', found {n_fields} fields"
        )
    names = RAW_COLUMNS if n_fields == len(RAW_COLUMNS) else ["row_index", *RAW_COLUMNS]
    frame = read_csv(path, header=None, names=names, skipinitialspace=True, dtype=str,
                     keep_default_na=False)
    frame = frame.drop(columns=["row_index", "instance weight"], errors="ignore")
    income = frame.pop("income").str.strip()
    known = income.isin(["50000+.", "- 50000."]).to_numpy()
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise MgoeError(
            f"{path}: column 'income' must be '- 50000.' or '50000+.', found {income.iloc[row]!r} "
            f"(line {row + 1})"
        )
    marital = frame.pop("marital status").str.strip()
    frame["never_married"] = (marital == "Never married").to_numpy(np.int8)
    frame["income"] = (income == "50000+.").to_numpy(np.int8)
    for col in NUMERIC:
        frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame, "raw"


def _snake(name: str) -> str:
    return "_".join(name.replace("divdends", "dividends").replace("-", " ").split())

"""Your own data: any CSV or Parquet file, or a folder of them with the same columns.

Input: a ``.csv`` / ``.tsv`` file (optionally compressed: ``.gz``, ``.bz2``, ``.zip``, ``.xz``,
``.zst``), a ``.parquet`` / ``.pq`` file, or a folder whose files of those types all have the
same columns. One row per logged (user, item) sample. Options (CLI flags in brackets):

* ``user_col`` (``--user-col``), ``item_col`` (``--item-col``): the id columns, required. Ids are
  kept as strings (``"u-α"``, ``"007"`` and ``"7"`` are different ids); an empty cell is an
  error.
* ``task_cols`` (``--task-cols a,b,c``): the 0/1 label columns in funnel order (shallowest
  first, most important last), required. Labels must be 0 or 1 (``1.0`` and booleans are
  accepted).
* ``time_col`` (``--time-col``): optional event time, integer/float unix seconds or a date-time
  text (ISO 8601, read as UTC); becomes ``timestamp`` (int seconds).
* ``feature_cols`` (``--feature-cols``): optional categorical columns, used as context
  features (values kept as text; an empty cell is the "missing" category).
* ``split_col`` (``--split-col``): optional column holding train / valid / test; the split is
  then kept exactly as given. Accepted spellings (any case): train, training; valid,
  validation, val, dev; test, testing. Anything else is an error naming the value.
* ``negatives`` (``--negatives``): ``real`` when rows with all-zero labels are logged
  impressions, ``sampled`` for implicit data (only positives logged; prepare draws negatives).
  Default: ``real`` if any row has all-zero labels, else ``sampled``.

Without a split column the split is by time when ``time_col`` is given, else per user at
random (prepare's ``auto``). Every problem is reported on one line naming the file, the column
and the offending value with its line (CSV, the header being line 1) or row (Parquet, from 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mgoe.data.importers._common import check_columns, require_path, shown
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

CSV_SUFFIXES = (".csv", ".tsv")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zip", ".xz", ".zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
SPLIT_SPELLINGS = {
    "train": "train", "training": "train",
    "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid",
    "test": "test", "testing": "test",
}
# Names the prepared samples use for their own columns; task and feature columns may not take them.
RESERVED = ("user", "item", "user_id", "item_id", "timestamp", "split", "_split")


def load(
    input_path: str | Path,
    user_col: str | None = None,
    item_col: str | None = None,
    task_cols: Sequence[str] | str | None = None,
    time_col: str | None = None,
    feature_cols: Sequence[str] | str | None = None,
    split_col: str | None = None,
    negatives: str | None = None,
    **_: object,
) -> RawDataset:
    tasks = _as_list(task_cols)
    features = _as_list(feature_cols)
    _check_options(user_col, item_col, tasks, time_col, features, split_col, negatives)
    assert user_col is not None and item_col is not None
    files = _input_files(Path(input_path))

    spec = _Spec(user_col, item_col, tasks, time_col, features, split_col)
    frames = []
    first_columns: list[str] | None = None
    for path in files:
        columns = _columns(path)
        check_columns(columns, spec.needed, path)
        if first_columns is None:
            first_columns = columns
        elif set(columns) != set(first_columns):
            extra = sorted(set(columns) - set(first_columns))
            missing = sorted(set(first_columns) - set(columns))
            detail = "; ".join(
                part for part in (
                    f"extra: {', '.join(extra)}" if extra else "",
                    f"missing: {', '.join(missing)}" if missing else "",
                ) if part
            )
            raise MgoeError(f"{path}: columns differ from {files[0]} ({detail}); a folder's files must share one schema")
        frames.append(_read(path, spec))
    interactions = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    if negatives is None:
        all_zero = ~interactions[tasks].to_numpy().any(axis=1)
        negatives = "real" if all_zero.any() else "sampled"
    root = Path(input_path)
    return RawDataset(
        name=root.name.split(".")[0] if root.is_file() else root.name,
        interactions=interactions,
        tasks=tasks,
        negatives=negatives,  # type: ignore[arg-type]
        context_features=features,
        source=", ".join(str(p) for p in files),
    )


class _Spec:
    def __init__(self, user_col: str, item_col: str, tasks: list[str], time_col: str | None,
                 features: list[str], split_col: str | None) -> None:
        self.user_col, self.item_col, self.tasks = user_col, item_col, tasks
        self.time_col, self.features, self.split_col = time_col, features, split_col
        self.needed = [user_col, item_col, *tasks, *([time_col] if time_col else []), *features,
                       *([split_col] if split_col else [])]


def _as_list(value: Sequence[str] | str | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _check_options(user_col: str | None, item_col: str | None, tasks: list[str],
                   time_col: str | None, features: list[str], split_col: str | None,
                   negatives: str | None) -> None:
    missing = [flag for flag, value in (("--user-col", user_col), ("--item-col", item_col),
                                        ("--task-cols", tasks)) if not value]
    if missing:
        raise MgoeError(
            "the table source needs --user-col, --item-col and --task-cols (the 0/1 label columns "
            f"in funnel order); missing: {', '.join(missing)}"
        )
    if negatives not in (None, "real", "sampled"):
        raise MgoeError(f"--negatives must be 'real' or 'sampled', got {negatives!r}")
    roles: dict[str, str] = {}
    named = [(user_col, "--user-col"), (item_col, "--item-col"), *((t, "--task-cols") for t in tasks),
             (time_col, "--time-col"), *((f, "--feature-cols") for f in features),
             (split_col, "--split-col")]
    for column, flag in named:
        if column is None:
            continue
        if column in roles:
            where = flag if roles[column] == flag else f"{roles[column]} and {flag}"
            raise MgoeError(f"column {column!r} is given twice ({where}); each column has one role")
        roles[column] = flag
    for column in [*tasks, *features]:
        if column in RESERVED:
            raise MgoeError(
                f"column {column!r} cannot be a task or feature column: the name is reserved "
                f"({', '.join(RESERVED)}); rename it in the file"
            )


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name.endswith(CSV_SUFFIXES):
        return "tsv" if name.endswith(".tsv") else "csv"
    if name.endswith(PARQUET_SUFFIXES) and name == path.name.lower():
        return "parquet"
    return None


def _input_files(path: Path) -> list[Path]:
    path = require_path(path)
    if path.is_file():
        if _kind(path) is None:
            raise MgoeError(
                f"{path}: unsupported file type {''.join(path.suffixes) or '(no extension)'!r}; "
                "use .csv, .tsv (optionally compressed) or .parquet"
            )
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and _kind(p))
    if not files:
        raise MgoeError(f"{path}: no CSV or Parquet file in this folder")
    return files


def _columns(path: Path) -> list[str]:
    if _kind(path) == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except (OSError, pa.ArrowException) as exc:
            raise MgoeError(f"{path}: cannot read as Parquet ({' '.join(str(exc).split())})") from None
    try:
        header = pd.read_csv(path, sep="\t" if _kind(path) == "tsv" else ",", nrows=0)
    except pd.errors.EmptyDataError:
        raise MgoeError(f"{path}: empty file") from None
    except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as exc:
        raise MgoeError(f"{path}: cannot read the header ({' '.join(str(exc).split())})") from None
    return [str(c) for c in header.columns]


def _read(path: Path, spec: _Spec) -> pd.DataFrame:
    kind = _kind(path)
    if kind == "parquet":
        try:
            frame = pd.read_parquet(path, columns=spec.needed)
        except (OSError, ValueError, pa.ArrowException) as exc:
            raise MgoeError(f"{path}: cannot read as Parquet ({' '.join(str(exc).split())})") from None
        where = _Where(path, offset=0, word="row")
    else:
        text_cols = [spec.user_col, spec.item_col, *spec.features,
                     *([spec.split_col] if spec.split_col else [])]
        try:
            frame = pd.read_csv(
                path, sep="\t" if kind == "tsv" else ",", usecols=spec.needed,
                dtype={c: str for c in text_cols}, keep_default_na=False, na_values=[""],
                low_memory=False,
            )
        except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as exc:
            raise MgoeError(f"{path}: cannot parse ({' '.join(str(exc).split())})") from None
        where = _Where(path, offset=2, word="line")  # header is line 1
    if len(frame) == 0:
        raise MgoeError(f"{path}: empty file (no rows)")

    out = pd.DataFrame({
        "user_id": _ids(frame[spec.user_col], where, spec.user_col),
        "item_id": _ids(frame[spec.item_col], where, spec.item_col),
    })
    for task in spec.tasks:
        out[task] = _labels(frame[task], where, task)
    if spec.time_col:
        out["timestamp"] = _seconds(frame[spec.time_col], where, spec.time_col)
    for col in spec.features:
        out[col] = frame[col].astype("string").to_numpy()
    if spec.split_col:
        out["split"] = _splits(frame[spec.split_col], where, spec.split_col)
    return out


class _Where:
    """Names a place in a file: ``path: ... (line N)`` for CSV, ``(row N)`` for Parquet."""

    def __init__(self, path: Path, offset: int, word: str) -> None:
        self.path, self.offset, self.word = path, offset, word

    def error(self, column: str, message: str, values: pd.Series, bad: np.ndarray,
              show_value: bool = True) -> MgoeError:
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        text = "an empty cell" if _is_missing(value) else shown(value)
        found = f", found {text}" if show_value else ""
        return MgoeError(f"{self.path}: column {column!r} {message}{found} ({self.word} {row + self.offset})")


def _is_missing(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _ids(values: pd.Series, where: _Where, column: str) -> np.ndarray:
    if pd.api.types.is_float_dtype(values.dtype):
        whole = values.dropna()
        if (whole == np.floor(whole)).all():  # integer ids stored as float (Parquet with nulls)
            values = values.astype("Int64")
    text = values.astype("string")
    bad = (text.isna() | (text.str.strip() == "")).fillna(True).to_numpy(bool)
    if bad.any():
        raise where.error(column, "has a missing id", values, bad, show_value=False)
    return text.to_numpy(dtype=object)


def _labels(values: pd.Series, where: _Where, column: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(values.dtype):
        numeric = values.astype("Int8")
    else:
        numeric = pd.to_numeric(values, errors="coerce")
    bad = ~numeric.isin([0, 1]).fillna(False).to_numpy(bool)
    if bad.any():
        raise where.error(column, "must be a 0/1 label", values, bad)
    return numeric.to_numpy(np.int8)


def _seconds(values: pd.Series, where: _Where, column: str) -> np.ndarray:
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        stamps = pd.to_datetime(values, utc=True)
    else:
        numeric = pd.to_numeric(values, errors="coerce")
        if not numeric.isna().any():
            return np.floor(numeric.to_numpy(np.float64)).astype(np.int64)
        if numeric.notna().any():  # a numeric column with a missing or non-numeric cell
            bad = numeric.isna().to_numpy(bool)
            raise where.error(column, "must be a number (unix seconds) or a date-time", values, bad)
        stamps = pd.to_datetime(values, utc=True, errors="coerce", format="ISO8601")
    bad = stamps.isna().to_numpy(bool)
    if bad.any():
        raise where.error(column, "must be a number (unix seconds) or a date-time", values, bad)
    epoch = pd.Timestamp("1970-01-01", tz="UTC")
    return ((stamps - epoch) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _splits(values: pd.Series, where: _Where, column: str) -> np.ndarray:
    normalised = values.astype("string").str.strip().str.lower()
    mapped = normalised.map(SPLIT_SPELLINGS)
    bad = mapped.isna().to_numpy(bool)
    if bad.any():
        raise where.error(column, "must be train, valid or test", values, bad)
    return mapped.to_numpy(dtype=object)

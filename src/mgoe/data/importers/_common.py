"""Helpers shared by the importers: file checks, checked CSV reads, id and bin conversions.

Everything here is vectorised (numpy / pandas); nothing loops over rows or interactions. Every
problem with the input is raised as :class:`~mgoe.errors.MgoeError` naming the file (and the
column and value where there is one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.errors import MgoeError

SPLIT_NAMES = ("train", "valid", "test")
_WHITESPACE = np.frombuffer(b" \t\n\r\x0b\x0c", dtype=np.uint8)


def require_file(directory: Path, name: str) -> Path:
    path = Path(directory) / name
    if not path.is_file():
        raise MgoeError(f"{path}: file not found")
    return path


def require_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MgoeError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise MgoeError(f"{path}: expected a directory")
    return path


def require_path(path: str | Path) -> Path:
    """A file or a directory that exists."""
    path = Path(path)
    if not path.exists():
        raise MgoeError(f"{path}: no such file or directory")
    return path


def files_matching(root: Path, patterns: Sequence[str]) -> list[Path]:
    """Sorted files of ``root`` matching any of the glob ``patterns`` (no duplicates)."""
    found: dict[Path, None] = {}
    for pattern in patterns:
        for path in sorted(root.glob(pattern)):
            if path.is_file():
                found[path] = None
    return list(found)


def split_from_name(path: Path) -> str | None:
    """train / valid / test when the file name says so (``*_train*``, ``*val*``, ``*test*``)."""
    name = path.name.lower()
    for token, split in (("train", "train"), ("valid", "valid"), ("val", "valid"), ("test", "test")):
        if token in name:
            return split
    return None


def check_columns(columns: Iterable[str], required: Iterable[str], where: str | Path) -> None:
    """Raise naming the first missing column and listing the ones that exist."""
    columns = [str(c) for c in columns]
    missing = [c for c in required if c not in columns]
    if missing:
        shown = ", ".join(columns[:60]) + (", ..." if len(columns) > 60 else "")
        raise MgoeError(
            f"{where}: no column {missing[0]!r}"
            + (f" (also missing: {', '.join(missing[1:])})" if len(missing) > 1 else "")
            + f"; the file has: {shown}"
        )


def read_csv(path: Path, required: Iterable[str] = (), **kwargs: object) -> pd.DataFrame:
    """``pd.read_csv`` with every parse failure turned into a one-line :class:`MgoeError`.

    ``required`` columns are checked against the header (the message lists the columns found).
    """
    try:
        frame = pd.read_csv(path, **kwargs)  # type: ignore[arg-type]
    except FileNotFoundError:
        raise MgoeError(f"{path}: file not found") from None
    except pd.errors.EmptyDataError:
        raise MgoeError(f"{path}: empty file") from None
    except UnicodeDecodeError as exc:
        raise MgoeError(f"{path}: not a text file in the expected encoding ({exc.reason})") from None
    except (ValueError, pd.errors.ParserError) as exc:
        message = " ".join(str(exc).split())
        raise MgoeError(f"{path}: cannot parse ({message})") from None
    check_columns(frame.columns, required, path)
    return frame


def shown(value: object) -> str:
    """A cell value for an error message: ``'abc'``, ``3``, ``2.5`` (not ``np.int64(3)``)."""
    if isinstance(value, np.generic):
        value = value.item()
    return repr(value)


def _place(row: int, line_offset: int | None) -> str:
    return f"row {row}" if line_offset is None else f"line {row + line_offset}"


def int_ids(values: pd.Series, where: str | Path, column: str, line_offset: int | None = None) -> np.ndarray:
    """Integer ids from a numeric or numeric-text column (``5``, ``5.0``); int64 array.

    Missing or non-integral values raise naming the column, the value and the place: ``row N``
    (0-based) or, with ``line_offset`` (2 for a CSV with a header, 1 without), ``line N``.
    """
    numeric = pd.to_numeric(values, errors="coerce")
    arr = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.isnan(arr) | (arr != np.floor(arr))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        value = values.iloc[row]
        what = "a missing id" if pd.isna(value) else f"a non-integer id {shown(value)}"
        raise MgoeError(f"{where}: column {column!r} has {what} ({_place(row, line_offset)})")
    if pd.api.types.is_integer_dtype(numeric.dtype):
        return numeric.to_numpy(np.int64)
    return arr.astype(np.int64)


def binary_labels(values: pd.Series, where: str | Path, column: str, line_offset: int | None = None) -> np.ndarray:
    """0/1 int8 labels; anything else raises naming the column, the value and the place."""
    numeric = pd.to_numeric(values, errors="coerce")
    ok = numeric.isin([0, 1]).to_numpy()
    if not ok.all():
        row = int(np.flatnonzero(~ok)[0])
        raise MgoeError(
            f"{where}: label column {column!r} must be 0/1, found {shown(values.iloc[row])} "
            f"({_place(row, line_offset)})"
        )
    return numeric.to_numpy(np.int8)


def quantile_bins(values: pd.Series, n_bins: int = 10, fit: np.ndarray | None = None) -> pd.Series:
    """Categorical bins of a numeric column (a nullable Int64 series; missing stays missing).

    Bin edges are the ``n_bins`` quantiles of the rows selected by the boolean mask ``fit`` (the
    training rows, so no statistic of valid/test rows is used), duplicates dropped: a column
    with few distinct values gets fewer bins. A column with at most ``n_bins`` distinct values
    is kept as is (each value its own category).
    """
    x = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    present = ~np.isnan(x)
    chosen = present if fit is None else present & np.asarray(fit, bool)
    reference = x[chosen]
    if np.unique(reference).size <= n_bins:
        return pd.Series(values, copy=False).reset_index(drop=True)
    inner = np.quantile(reference, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = np.unique(inner)
    # right-closed bins (edges[i-1], edges[i]]: a zero-heavy column keeps 0 apart from > 0
    bins = np.searchsorted(edges, np.nan_to_num(x), side="left").astype(np.int64)
    return pd.Series(pd.array(bins, dtype="Int64")).mask(~present)


def row_split(n_rows: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> np.ndarray:
    """A deterministic seeded random train/valid/test assignment of ``n_rows`` rows.

    For tabular sources whose rows are independent (one "user" per row), where the per-user split
    of :func:`mgoe.data.prepare.prepare_dataset` would put every row in train.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_rows)
    n_train = int(round(n_rows * fractions[0]))
    n_valid = int(round(n_rows * fractions[1]))
    codes = np.zeros(n_rows, np.int8)
    codes[order[n_train : n_train + n_valid]] = 1
    codes[order[n_train + n_valid :]] = 2
    return np.asarray(SPLIT_NAMES, dtype=object)[codes]


def read_pairs(path: Path) -> pd.DataFrame:
    """Read ``user item`` lines (whitespace-separated integers) into user_id, item_id columns."""
    try:
        frame = pd.read_csv(
            path, sep=r"\s+", header=None, usecols=[0, 1], names=["user_id", "item_id"],
            dtype=np.int64, engine="c",
        )
    except (ValueError, pd.errors.ParserError) as exc:
        raise MgoeError(f"{path}: expected 'user item' integer pairs per line ({exc})") from None
    return frame


def read_adjacency(path: Path) -> pd.DataFrame:
    """Read adjacency lines ``user item item ...`` into user_id, item_id pairs.

    Fully vectorised: the file's bytes are split into tokens once; each token's line is the
    number of newlines before its first byte (``np.searchsorted`` on the newline positions), and
    the first token of every line is that line's user.
    """
    data = Path(path).read_bytes()
    tokens = data.split()  # ASCII whitespace, same set as _WHITESPACE
    if not tokens:
        return pd.DataFrame({"user_id": np.zeros(0, np.int64), "item_id": np.zeros(0, np.int64)})
    try:
        values = np.array(tokens).astype(np.int64)
    except ValueError:
        raise MgoeError(f"{path}: expected integer ids in every line") from None
    raw = np.frombuffer(data, dtype=np.uint8)
    space = np.isin(raw, _WHITESPACE)
    starts = np.flatnonzero(~space & np.r_[True, space[:-1]])
    if starts.size != values.size:  # cannot happen for ASCII input; guards odd encodings
        raise MgoeError(f"{path}: unexpected characters; expected ASCII 'user item item ...' lines")
    newlines = np.flatnonzero(raw == ord("\n"))
    line = np.searchsorted(newlines, starts)
    first = np.r_[True, line[1:] != line[:-1]]
    users = values[first][np.cumsum(first) - 1]
    return pd.DataFrame({"user_id": users[~first], "item_id": values[~first]})

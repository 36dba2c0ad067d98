"""Helpers shared by the importers: file checks and fast whitespace-separated reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.errors import MgoeError


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
    """Read adjacency lines ``user item item ...`` into user_id, item_id pairs (vectorised)."""
    text = path.read_text()
    lines = text.split("\n")
    lengths = []
    tokens: list[str] = []
    for line in lines:  # one entry per user line, not per interaction
        parts = line.split()
        if parts:
            lengths.append(len(parts))
            tokens.extend(parts)
    if not tokens:
        return pd.DataFrame({"user_id": np.zeros(0, np.int64), "item_id": np.zeros(0, np.int64)})
    try:
        values = np.asarray(tokens, dtype=np.int64)
    except ValueError:
        raise MgoeError(f"{path}: expected integer ids in every line") from None
    lengths_arr = np.asarray(lengths)
    starts = np.r_[0, np.cumsum(lengths_arr)[:-1]]
    users = values[starts]
    is_user = np.zeros(values.size, bool)
    is_user[starts] = True
    return pd.DataFrame({"user_id": np.repeat(users, lengths_arr - 1), "item_id": values[~is_user]})

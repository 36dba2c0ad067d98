"""Beibei (GHCF adjacency layout) on the real files, and the vectorised adjacency reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgoe.data import Dataset, PrepareOptions, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.data.importers._common import read_adjacency
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def adjacency_pairs(path: Path) -> list[tuple[int, int]]:
    """Plain-Python reference reading of ``user item item ...`` lines."""
    out = []
    with open(path) as handle:
        for line in handle:
            parts = [int(p) for p in line.split()]
            out.extend((parts[0], item) for item in parts[1:])
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = shared("ghcf-multibehavior", "Beibei")
    out = tmp_path_factory.mktemp("beibei") / "d"
    prepare_dataset(get_importer("beibei")(root), out, PrepareOptions(negatives_per_positive=4))
    return root, Dataset.open(out)


def test_counts_match_the_raw_files(prepared):
    root, ds = prepared
    info = ds.info()
    assert (info["users"], info["items"]) == (21_716, 7_977)
    assert info["tasks"] == ["cart", "buy"]
    cart = set(adjacency_pairs(root / "cart.txt"))
    buy = set(adjacency_pairs(root / "train.txt")) | set(adjacency_pairs(root / "test.txt"))
    assert sum(s["positives"]["cart"] for s in info["splits"].values()) == len(cart)
    assert sum(s["positives"]["buy"] for s in info["splits"].values()) == len(buy)
    assert sum(s["rows"] for s in info["splits"].values()) == 5 * len(cart | buy)
    assert ds.meta.negatives == "sampled"


def test_raw_file_sizes_as_documented():
    root = shared("ghcf-multibehavior", "Beibei")
    frame = read_adjacency(root / "train.txt")
    assert len(frame) == 282_860
    assert frame["user_id"].nunique() == 21_716
    assert len(read_adjacency(root / "cart.txt")) == 642_622
    assert len(read_adjacency(root / "test.txt")) == 21_716


def test_read_adjacency_matches_a_plain_reading(tmp_path):
    path = tmp_path / "adj.txt"
    # blank line, CRLF, tab, a user without items, leading spaces, no final newline
    path.write_bytes(b"0 5 6 7\n\n1\t8\r\n2\n  3 9 10\n4 11")
    frame = read_adjacency(path)
    got = list(zip(frame["user_id"].tolist(), frame["item_id"].tolist(), strict=True))
    assert got == [(0, 5), (0, 6), (0, 7), (1, 8), (3, 9), (3, 10), (4, 11)]
    assert got == adjacency_pairs(path)


def test_read_adjacency_empty_and_bad(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    assert len(read_adjacency(empty)) == 0
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1 2\n1 x\n")
    with pytest.raises(MgoeError, match=r"bad.txt: expected integer ids"):
        read_adjacency(bad)


def test_missing_file_is_a_clear_error(tmp_path):
    (tmp_path / "cart.txt").write_text("0 1\n")
    with pytest.raises(MgoeError, match="train.txt: file not found"):
        get_importer("beibei")(tmp_path)

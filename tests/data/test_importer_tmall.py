"""Tmall (MBGCN layout) on the real files: counts against an independent plain-Python reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgoe.data import Dataset, PrepareOptions, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def pairs(path: Path) -> set[tuple[int, int]]:
    out = set()
    with open(path) as handle:
        for line in handle:
            parts = line.split()
            if parts:
                out.add((int(parts[0]), int(parts[1])))
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = shared("mbgcn-tmall")
    out = tmp_path_factory.mktemp("tmall") / "d"
    prepare_dataset(get_importer("tmall")(root), out, PrepareOptions(negatives_per_positive=4))
    return root, Dataset.open(out)


def test_counts_match_the_raw_files(prepared):
    root, ds = prepared
    info = ds.info()
    assert (info["users"], info["items"]) == (41_738, 11_953)
    assert info["tasks"] == ["collect", "cart", "buy"]
    expected = {
        "collect": pairs(root / "collect.txt"),
        "cart": pairs(root / "cart.txt"),
        "buy": pairs(root / "buy.txt") | pairs(root / "validation.txt") | pairs(root / "test.txt"),
    }
    for task, task_pairs in expected.items():
        got = sum(split["positives"][task] for split in info["splits"].values())
        assert got == len(task_pairs), task
    union = set().union(*expected.values())
    rows = sum(split["rows"] for split in info["splits"].values())
    assert rows == 5 * len(union)  # one row per distinct pair + 4 sampled negatives each


def test_original_ids_are_kept(prepared):
    root, ds = prepared
    users, items = ds.user_ids(), ds.item_ids()
    assert list(users[:3]) == ["0", "1", "2"]  # declared id space 0..41737, in numeric order
    train = ds.read_split("train", columns=["user", "item", "buy"])
    some = train[train["buy"] == 1].head(200)
    buys = pairs(root / "buy.txt") | pairs(root / "validation.txt") | pairs(root / "test.txt")
    for u, i in zip(users[some["user"]], items[some["item"]], strict=True):
        assert (int(u), int(i)) in buys


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(MgoeError, match="no such file or directory"):
        get_importer("tmall")(tmp_path / "nope")
    (tmp_path / "buy.txt").write_text("0 1\n")
    with pytest.raises(MgoeError, match="collect.txt: file not found"):
        get_importer("tmall")(tmp_path)

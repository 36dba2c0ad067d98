"""Taobao UserBehavior sample: one sample per pair, behaviours OR-ed, counts from the file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mgoe.data import Dataset, PrepareOptions, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TASKS = ["pv", "fav", "cart", "buy"]


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def test_sample(tmp_path):
    path = shared("taobao-userbehavior-sample", "UserBehavior.csv")
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert len(rows) == 4_321
    pairs = {t: {(r[0], r[1]) for r in rows if r[3] == t} for t in TASKS}
    assert [sum(r[3] == t for r in rows) for t in TASKS] == [3_926, 128, 190, 77]  # SOURCE.md
    prepare_dataset(get_importer("taobao-userbehavior")(path), tmp_path / "d",
                    PrepareOptions(negatives_per_positive=4))
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert info["tasks"] == TASKS
    assert (info["users"], info["items"]) == (len({r[0] for r in rows}), len({r[1] for r in rows})) == (43, 3_276)
    for task in TASKS:
        assert sum(s["positives"][task] for s in info["splits"].values()) == len(pairs[task]), task
    all_pairs = {(r[0], r[1]) for r in rows}
    assert sum(s["rows"] for s in info["splits"].values()) == 5 * len(all_pairs)
    # pairs with a deeper behaviour but no pv row still count
    assert pairs["buy"] - pairs["pv"]
    assert ds.meta.has_timestamp and ds.meta.item_features == {"category_id": len({r[2] for r in rows}) + 1}


def test_errors(tmp_path):
    bad = tmp_path / "UserBehavior.csv"
    bad.write_text("1,2,3,pv,1511544070\n1,2,3,click,1511544071\n")
    with pytest.raises(MgoeError, match=r"column 'behavior_type' must be one of pv, fav, cart, buy, found 'click' \(line 2\)"):
        get_importer("taobao-userbehavior")(bad)
    bad.write_text("1,2,3,pv,1511544070\n1,,3,pv,1511544071\n")
    with pytest.raises(MgoeError, match=r"column 'item_id' has a missing value \(line 2\)"):
        get_importer("taobao-userbehavior")(bad)
    bad.write_text("1,2,3,pv\n")
    with pytest.raises(MgoeError, match="expected 5 comma-separated fields"):
        get_importer("taobao-userbehavior")(bad)
    with pytest.raises(MgoeError, match="no such file or directory"):
        get_importer("taobao-userbehavior")(tmp_path / "missing.csv")

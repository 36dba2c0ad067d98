"""Ali-CCP processed sample: labels per split equal the counts in each file."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mgoe.data import Dataset, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FILES = {"train": "ali_ccp_train_sample.csv", "valid": "ali_ccp_val_sample.csv", "test": "ali_ccp_test_sample.csv"}


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def file_counts(path: Path) -> dict[str, int]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "rows": len(rows),
        "click": sum(int(r["click"]) for r in rows),
        "purchase": sum(int(r["purchase"]) for r in rows),
    }


def test_sample_folder(tmp_path):
    root = shared("ali-ccp-sample")
    prepare_dataset(get_importer("aliccp")(root), tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert info["tasks"] == ["click", "purchase"]
    for split, name in FILES.items():
        expected = file_counts(root / name)
        got = info["splits"][split]
        assert got["rows"] == expected["rows"], split
        assert got["positives"] == {"click": expected["click"], "purchase": expected["purchase"]}, split
    items, users = set(), set()
    for name in FILES.values():
        with open(root / name, newline="") as handle:
            for rec in csv.DictReader(handle):
                items.add(rec["205"])
                users.add(rec["101"])
    assert (info["users"], info["items"]) == (len(users), len(items)) == (1, 120)
    assert ds.meta.negatives == "real" and ds.meta.split_protocol.startswith("split as given")
    assert set(ds.meta.user_features) == {f"f{c}" for c in ("121", "122", "124", "125", "126", "127", "128", "129")}
    assert set(ds.meta.item_features) == {"f206", "f207", "f210", "f216"}
    assert set(ds.meta.context_features) == {"f301", "f508", "f509", "f702", "f853"}


def test_single_file_takes_its_split_from_the_name():
    path = shared("ali-ccp-sample", "ali_ccp_val_sample.csv")
    raw = get_importer("aliccp")(path)
    assert set(raw.interactions["split"]) == {"valid"}
    assert raw.interactions["click"].sum() == file_counts(path)["click"]


def test_errors(tmp_path):
    with pytest.raises(MgoeError, match="no Ali-CCP CSV"):
        get_importer("aliccp")(tmp_path)
    bad = tmp_path / "ali_ccp_train.csv"
    bad.write_text("click,purchase,101\n0,0,1\n")
    with pytest.raises(MgoeError, match=r"ali_ccp_train.csv: no column '205'; the file has: click, purchase, 101"):
        get_importer("aliccp")(bad)
    bad.write_text("click,purchase,101,205\n0,0,1,3\n1,2,1,4\n")
    with pytest.raises(MgoeError, match=r"label column 'purchase' must be 0/1, found 2 \(line 3\)"):
        get_importer("aliccp")(bad)

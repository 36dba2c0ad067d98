"""AliExpress sample: labels per file, the deterministic session-level valid split, no graph."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mgoe.data import Dataset, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not found: {path} (expected ../shared/data beside the repo root)")
    return path


def read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_sample_folder(tmp_path):
    root = shared("aliexpress-sample")
    train = read(root / "aliexpress_train_sample.csv")
    test = read(root / "aliexpress_test_sample.csv")
    raw = get_importer("aliexpress")(root)
    prepare_dataset(raw, tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert info["tasks"] == ["click", "conversion"]
    assert ds.meta.has_graph is False and ds.meta.negatives == "real"
    assert info["items"] == 1
    assert info["users"] == len({r["search_id"] for r in train + test})
    s = info["splits"]
    assert s["test"]["rows"] == len(test)
    assert s["test"]["positives"] == {
        "click": sum(int(r["click"]) for r in test),
        "conversion": sum(int(r["conversion"]) for r in test),
    }
    assert s["train"]["rows"] + s["valid"]["rows"] == len(train)
    for task in ("click", "conversion"):
        assert s["train"]["positives"][task] + s["valid"]["positives"][task] == sum(int(r[task]) for r in train)
    # valid = whole sessions, about 10% of the train file's sessions
    frame = raw.interactions
    in_train = set(frame.loc[frame["split"] == "train", "user_id"])
    in_valid = set(frame.loc[frame["split"] == "valid", "user_id"])
    assert not in_train & in_valid
    assert len(in_valid) == round(0.1 * len({r["search_id"] for r in train}))
    assert len(ds.meta.context_features) == 16 + 63


def test_split_is_deterministic():
    root = shared("aliexpress-sample")
    a = get_importer("aliexpress")(root).interactions["split"].tolist()
    b = get_importer("aliexpress")(root).interactions["split"].tolist()
    assert a == b


def test_numeric_bins_use_training_rows_only(tmp_path):
    header = "search_id,categorical_1,numerical_1,click,conversion\n"
    train = "".join(f"{i},1,{i / 100},{i % 2},0\n" for i in range(40))
    (tmp_path / "x_train.csv").write_text(header + train)
    (tmp_path / "x_test.csv").write_text(header + "100,1,99.0,1,1\n101,1,-5,0,0\n")
    frame = get_importer("aliexpress")(tmp_path).interactions
    bins = frame["numerical_1"]
    # test values outside the training range land in the first / last training bin
    assert bins.iloc[-2] == bins.iloc[:40].max() and bins.iloc[-1] == bins.iloc[:40].min()
    assert bins.iloc[:40].nunique() == 10


def test_errors(tmp_path):
    with pytest.raises(MgoeError, match="no AliExpress CSV"):
        get_importer("aliexpress")(tmp_path)
    bad = tmp_path / "aliexpress_train.csv"
    bad.write_text("search_id,click\n1,0\n")
    with pytest.raises(MgoeError, match=r"no column 'conversion'; the file has: search_id, click"):
        get_importer("aliexpress")(bad)

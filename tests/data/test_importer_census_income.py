"""Census-Income (KDD): raw UCI files, the .sample variant and the processed CSVs."""

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


def raw_counts(path: Path, offset: int) -> tuple[int, int, int]:
    with open(path, newline="") as handle:
        rows = [[f.strip() for f in r] for r in csv.reader(handle) if r]
    never = sum(r[7 + offset] == "Never married" for r in rows)
    rich = sum(r[-1] == "50000+." for r in rows)
    return len(rows), never, rich


def prepare(raw, tmp_path) -> Dataset:
    prepare_dataset(raw, tmp_path / "d")
    return Dataset.open(tmp_path / "d")


def totals(info: dict) -> dict[str, int]:
    return {t: sum(s["positives"][t] for s in info["splits"].values()) for t in info["tasks"]}


def test_raw_data_file(tmp_path):
    path = shared("census-income-kdd", "census-income.data")
    n, never, rich = raw_counts(path, 0)
    assert (n, never, rich) == (1_891, 824, 102)
    ds = prepare(get_importer("census-income")(path), tmp_path)
    info = ds.info()
    assert info["tasks"] == ["never_married", "income"]
    assert totals(info) == {"never_married": never, "income": rich}
    assert (info["users"], info["items"]) == (n, 1)
    assert ds.meta.has_graph is False and ds.meta.negatives == "real"
    # a raw file alone: seeded 80/10/10 row split
    assert [info["splits"][s]["rows"] for s in ("train", "valid", "test")] == [1_513, 189, 189]
    features = ds.meta.context_features
    assert "marital_status" not in features and "instance_weight" not in features
    assert len(features) == 39  # 42 fields - instance weight - the two label columns
    assert features["age"] == 11  # 10 quantile bins + missing


def test_raw_sample_with_row_index(tmp_path):
    path = shared("census-income-kdd", "census-income.sample")
    n, never, rich = raw_counts(path, 1)
    info = prepare(get_importer("census-income")(path), tmp_path).info()
    assert info["users"] == n == 200
    assert totals(info) == {"never_married": never, "income": rich} == {"never_married": 84, "income": 12}


def test_processed_csvs_keep_their_split(tmp_path):
    root = shared("census-income-kdd")
    raw = get_importer("census-income")(root / "census_income_train_sample.csv")
    assert set(raw.interactions["split"]) == {"train"}
    files = {s: root / f"census_income_{n}_sample.csv" for s, n in (("train", "train"), ("valid", "val"), ("test", "test"))}
    folder = tmp_path / "processed"
    folder.mkdir()
    for path in files.values():
        (folder / path.name).symlink_to(path)
    info = prepare(get_importer("census-income")(folder), tmp_path).info()
    for split, path in files.items():
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert info["splits"][split]["rows"] == len(rows)
        assert info["splits"][split]["positives"] == {
            "never_married": sum(int(float(r["marital status"])) for r in rows),
            "income": sum(int(float(r["income"])) for r in rows),
        }


def test_data_and_test_files_mmoe_split(tmp_path):
    lines = shared("census-income-kdd", "census-income.data").read_text().splitlines(keepends=True)
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "census-income.data").write_text("".join(lines[:1000]))
    (folder / "census-income.test").write_text("".join(lines[1000:1400]))
    frame = get_importer("census-income")(folder).interactions
    assert frame["split"].iloc[:1000].eq("train").all()
    assert frame["split"].iloc[1000:].value_counts().to_dict() == {"valid": 200, "test": 200}


def test_errors(tmp_path):
    bad = tmp_path / "census.csv"
    bad.write_text("1,2,3\n")
    with pytest.raises(MgoeError, match="expected 42 comma-separated fields"):
        get_importer("census-income")(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MgoeError, match="no census file"):
        get_importer("census-income")(empty)
    line = shared("census-income-kdd", "census-income.data").read_text().splitlines()[0]
    bad.write_text(line.rsplit(",", 1)[0] + ", maybe\n")
    with pytest.raises(MgoeError, match=r"column 'income' must be '- 50000.' or '50000\+.', found 'maybe' \(line 1\)"):
        get_importer("census-income")(bad)


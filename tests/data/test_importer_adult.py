"""UCI Adult parquet: label counts from the file, seeded 80/10/10 row split, no graph."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
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


def test_adult(tmp_path):
    path = shared("uci-adult", "adult.parquet.brotli")
    table = pq.read_table(path, columns=["income", "marital-status"]).to_pylist()
    never = sum(r["marital-status"] == "Never-married" for r in table)
    rich = sum(r["income"] == ">50K" for r in table)
    assert (len(table), never, rich) == (48_842, 16_117, 11_687)
    prepare_dataset(get_importer("adult")(path.parent), tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert info["tasks"] == ["never_married", "income"]
    assert (info["users"], info["items"]) == (48_842, 1)
    assert {t: sum(s["positives"][t] for s in info["splits"].values()) for t in info["tasks"]} == {
        "never_married": never, "income": rich,
    }
    assert [info["splits"][s]["rows"] for s in ("train", "valid", "test")] == [39_074, 4_884, 4_884]
    assert ds.meta.has_graph is False and ds.meta.negatives == "real"
    assert set(ds.meta.context_features) == {
        "workclass", "education", "occupation", "relationship", "race", "gender", "native_country",
        "age", "capital_gain", "capital_loss", "hours_per_week",
    }
    assert ds.meta.context_features["age"] == 11


def test_uci_test_spelling_and_errors(tmp_path):
    frame = pd.DataFrame({
        "age": [30, 40], "workclass": ["Private"] * 2, "education": ["HS-grad"] * 2,
        "marital-status": ["Never-married", "Divorced"], "occupation": ["Sales"] * 2,
        "relationship": ["Own-child"] * 2, "race": ["White"] * 2, "gender": ["Male"] * 2,
        "capital-gain": [0, 0], "capital-loss": [0, 0], "hours-per-week": [40, 50],
        "native-country": ["United-States"] * 2, "income": [">50K.", "<=50K."],
    })
    frame.to_parquet(tmp_path / "a.parquet")
    raw = get_importer("adult")(tmp_path / "a.parquet")
    assert raw.interactions["income"].tolist() == [1, 0]
    assert raw.interactions["never_married"].tolist() == [1, 0]
    frame.assign(income=["rich", "<=50K"]).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(MgoeError, match=r"column 'income' must be '>50K' or '<=50K', found 'rich' \(row 0\)"):
        get_importer("adult")(tmp_path / "a.parquet")
    frame.drop(columns=["gender"]).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(MgoeError, match="no column 'gender'"):
        get_importer("adult")(tmp_path / "a.parquet")
    (tmp_path / "a.parquet").write_text("not parquet")
    with pytest.raises(MgoeError, match="cannot read as Parquet"):
        get_importer("adult")(tmp_path / "a.parquet")

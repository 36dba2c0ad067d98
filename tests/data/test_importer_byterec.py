"""ByteRec (ICME 2019 track2) sample: label counts from the file, columns mapped by position."""

from __future__ import annotations

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


def test_sample(tmp_path):
    path = shared("byterec-icme2019-sample", "byterec_sample.txt")
    rows = [line.rstrip("\n").split("\t") for line in path.read_text().splitlines() if line]
    assert len(rows) == 200
    raw = get_importer("byterec")(path.parent)
    prepare_dataset(raw, tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    info = ds.info()
    assert info["tasks"] == ["finish", "like"]
    assert (info["users"], info["items"]) == (len({r[0] for r in rows}), len({r[2] for r in rows}))
    assert sum(s["rows"] for s in info["splits"].values()) == 200
    assert sum(s["positives"]["finish"] for s in info["splits"].values()) == sum(int(r[6]) for r in rows)
    assert sum(s["positives"]["like"] for s in info["splits"].values()) == sum(int(r[7]) for r in rows)
    assert ds.meta.has_timestamp
    first = raw.interactions.iloc[0]
    assert (first["user_id"], first["item_id"], first["timestamp"]) == (int(rows[0][0]), int(rows[0][2]), int(rows[0][10]))
    assert set(ds.meta.item_features) == {"author_id", "item_city", "music_id", "duration_time"}
    assert set(ds.meta.context_features) == {"channel", "device"}
    assert set(ds.meta.user_features) == {"user_city"}


def test_errors(tmp_path):
    with pytest.raises(MgoeError, match="no ICME 2019 track2 file"):
        get_importer("byterec")(tmp_path)
    bad = tmp_path / "bad.txt"
    bad.write_text("1\t2\t3\n")
    with pytest.raises(MgoeError, match="expected 12 tab-separated fields per line"):
        get_importer("byterec")(bad)
    bad.write_text("1\t2\t3\t4\t5\t0\t1\t0\t9\t1\t100\t10\n1\t2\tx\t4\t5\t0\t1\t0\t9\t1\t100\t10\n")
    with pytest.raises(MgoeError, match=r"column 'item_id' has 'x', expected an integer \(line 2\)"):
        get_importer("byterec")(bad)
    bad.write_text("1\t2\t3\t4\t5\t0\t2\t0\t9\t1\t100\t10\n")
    with pytest.raises(MgoeError, match=r"label column 'finish' must be 0/1, found 2 \(line 1\)"):
        get_importer("byterec")(bad)

"""The ``table`` source (the user's own CSV / Parquet): id round trip, given split, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from mgoe.cli import main
from mgoe.data import Dataset, prepare_dataset
from mgoe.data.importers import get_importer
from mgoe.errors import MgoeError

load = get_importer("table")
OPTS = {"user_col": "uid", "item_col": "iid", "task_cols": ["click", "buy"]}
CSV = (
    "uid,iid,click,buy,when,device,part\n"
    "u-α,item/7,1,0,1600000000,ios,train\n"
    "u-α,item/8,0,0,1600000100,ios,train\n"
    "007,item/7,1,1,1600000200,web,train\n"
    "7,item/7,0,0,1600000300,,train\n"
    "u-α,item/9,1,0,1600000400,ios,Validation\n"
    "007,item/8,0,0,1600000500,web,val\n"
    "7,item/9,1,1,1600000600,android,TEST\n"
    "u-α,item/7,0,0,1600000700,ios,test\n"
)
EXPECTED_SPLIT = ["train"] * 4 + ["valid"] * 2 + ["test"] * 2


def write(tmp_path: Path, text: str, name: str = "log.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def original_triples(ds: Dataset) -> Counter:
    users, items = ds.user_ids(), ds.item_ids()
    triples = Counter()
    for split in ("train", "valid", "test"):
        frame = ds.read_split(split, columns=["user", "item"])
        triples.update(zip(users[frame["user"]], items[frame["item"]], [split] * len(frame), strict=True))
    return triples


def test_string_ids_and_given_split_round_trip(tmp_path):
    path = write(tmp_path, CSV)
    raw = load(path, **OPTS, time_col="when", feature_cols="device", split_col="part")
    assert raw.negatives == "real"  # some rows have all-zero labels
    prepare_dataset(raw, tmp_path / "d")
    ds = Dataset.open(tmp_path / "d")
    source = pd.read_csv(path, dtype=str)
    expected = Counter(zip(source["uid"], source["iid"], EXPECTED_SPLIT, strict=True))
    assert original_triples(ds) == expected
    assert sorted(ds.user_ids()) == ["007", "7", "u-α"]  # "007" and "7" stay different ids
    assert sorted(ds.item_ids()) == ["item/7", "item/8", "item/9"]
    info = ds.info()
    assert [info["splits"][s]["rows"] for s in ("train", "valid", "test")] == [4, 2, 2]
    assert info["splits"]["test"]["positives"] == {"click": 1, "buy": 1}
    assert ds.meta.split_protocol.startswith("split as given")
    assert ds.meta.context_features == {"device": 4}  # android, ios, web + missing
    assert ds.meta.has_timestamp


def test_labels_and_times_survive(tmp_path):
    path = write(tmp_path, CSV)
    raw = load(path, **OPTS, time_col="when", split_col="part")
    frame = raw.interactions
    assert frame["click"].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert frame["buy"].tolist() == [0, 0, 1, 0, 0, 0, 1, 0]
    assert frame["timestamp"].tolist() == [1600000000 + 100 * k for k in range(8)]
    assert frame["split"].tolist() == EXPECTED_SPLIT


def test_default_negatives_and_datetime_text(tmp_path):
    path = write(tmp_path, "u,i,like,t\na,x,1,2021-03-01T10:00:00Z\nb,y,1,2021-03-02\n")
    raw = load(path, user_col="u", item_col="i", task_cols="like", time_col="t")
    assert raw.negatives == "sampled"  # every row positive: implicit feedback
    assert raw.interactions["timestamp"].tolist() == [1614592800, 1614643200]
    assert load(path, user_col="u", item_col="i", task_cols="like", negatives="real").negatives == "real"


def test_parquet_and_folder(tmp_path):
    frame = pd.read_csv(write(tmp_path, CSV), dtype={"uid": str, "iid": str})
    folder = tmp_path / "parts"
    folder.mkdir()
    frame.iloc[:5].to_parquet(folder / "a.parquet")
    frame.iloc[5:].to_parquet(folder / "b.parquet")
    raw = load(folder, **OPTS, split_col="part")
    assert raw.interactions["user_id"].tolist() == frame["uid"].tolist()
    assert raw.interactions["split"].tolist() == EXPECTED_SPLIT
    frame.iloc[5:].drop(columns=["device"]).to_parquet(folder / "b.parquet")
    with pytest.raises(MgoeError, match=r"b.parquet: columns differ from .*a.parquet \(missing: device\)"):
        load(folder, **OPTS)


# ------------------------------------------------------------------ errors: one line, named

def error(tmp_path: Path, text: str | None, name: str = "log.csv", **options: object) -> str:
    path = write(tmp_path, text, name) if text is not None else tmp_path / name
    with pytest.raises(MgoeError) as info:
        load(path, **{**OPTS, **options})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_missing_file(tmp_path):
    assert error(tmp_path, None, "nope.csv").endswith("nope.csv: no such file or directory")


def test_error_unsupported_extension(tmp_path):
    message = error(tmp_path, "uid,iid\n", "data.xlsx")
    assert "data.xlsx: unsupported file type '.xlsx'" in message


def test_error_unknown_column_lists_the_columns(tmp_path):
    message = error(tmp_path, "uid,iid,clicked,buy\nu,i,1,0\n")
    assert message.endswith("log.csv: no column 'click'; the file has: uid, iid, clicked, buy")


def test_error_label_not_binary(tmp_path):
    message = error(tmp_path, "uid,iid,click,buy\nu,i,1,0\nu,j,2,0\n")
    assert message.endswith("log.csv: column 'click' must be a 0/1 label, found 2 (line 3)")
    message = error(tmp_path, "uid,iid,click,buy\nu,i,1,yes\n")
    assert message.endswith("column 'buy' must be a 0/1 label, found 'yes' (line 2)")


def test_error_missing_id(tmp_path):
    message = error(tmp_path, "uid,iid,click,buy\nu,i,1,0\n,j,0,0\n")
    assert message.endswith("log.csv: column 'uid' has a missing id (line 3)")


def test_error_empty_file(tmp_path):
    assert error(tmp_path, "").endswith("log.csv: empty file")
    assert error(tmp_path, "uid,iid,click,buy\n").endswith("log.csv: empty file (no rows)")


def test_error_bad_split_value(tmp_path):
    message = error(tmp_path, "uid,iid,click,buy,part\nu,i,1,0,train\nu,j,0,0,holdout\n", split_col="part")
    assert message.endswith("column 'part' must be train, valid or test, found 'holdout' (line 3)")


def test_error_bad_time_value(tmp_path):
    message = error(tmp_path, "uid,iid,click,buy,t\nu,i,1,0,5\nu,j,0,0,soon\n", time_col="t")
    assert message.endswith("column 't' must be a number (unix seconds) or a date-time, found 'soon' (line 3)")


def test_error_missing_required_options(tmp_path):
    path = write(tmp_path, CSV)
    with pytest.raises(MgoeError, match="missing: --user-col, --task-cols"):
        load(path, item_col="iid")
    with pytest.raises(MgoeError, match=r"column 'uid' is given twice \(--user-col and --feature-cols\)"):
        load(path, **OPTS, feature_cols=["uid"])
    with pytest.raises(MgoeError, match="--negatives must be 'real' or 'sampled', got 'maybe'"):
        load(path, **OPTS, negatives="maybe")


def test_cli_reports_one_line_and_exit_2(tmp_path, capsys):
    path = write(tmp_path, "uid,iid,click,buy\nu,i,1,0\nu,j,3,0\n")
    code = main([
        "data", "prepare", "table", "--input", str(path), "--output", str(tmp_path / "d"),
        "--user-col", "uid", "--item-col", "iid", "--task-cols", "click,buy",
    ])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mgoe: error: ")
    assert "column 'click' must be a 0/1 label, found 3 (line 3)" in err
    assert not (tmp_path / "d").exists()


def test_cli_success(tmp_path, capsys):
    path = write(tmp_path, CSV)
    code = main([
        "data", "prepare", "table", "--input", str(path), "--output", str(tmp_path / "d"),
        "--user-col", "uid", "--item-col", "iid", "--task-cols", "click,buy", "--split-col", "part",
        "--feature-cols", "device", "--time-col", "when",
    ])
    assert code == 0, capsys.readouterr().err
    assert Dataset.open(tmp_path / "d").info()["users"] == 3

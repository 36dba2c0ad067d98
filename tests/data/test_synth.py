"""The synthetic generator: prepared format, determinism, funnel, time split, planted structure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from scipy.stats import spearmanr

from mgoe.cli import main
from mgoe.data.schema import SPLITS, Dataset
from mgoe.data.synth import (
    DEMO_CONFIG,
    SynthConfig,
    alias_tables,
    default_task_names,
    generate,
    load_planted,
    plant_structure,
    preset,
)
from mgoe.errors import MgoeError

BASE = SynthConfig(users=2_000, items=500, interactions=60_000, communities=6, seed=1, chunk_rows=25_000)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "base"
    generate(BASE, out)
    return out


def _all_rows(ds: Dataset) -> pd.DataFrame:
    return pd.concat([ds.read_split(s).assign(split=s) for s in SPLITS], ignore_index=True)


def _data_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_prepared_format_and_counts(base_dir: Path) -> None:
    ds = Dataset.open(base_dir)
    meta = ds.meta
    assert meta.tasks == ["click", "like", "follow"]
    assert meta.negatives == "real" and meta.has_timestamp and meta.has_graph
    assert (meta.num_users, meta.num_items) == (BASE.users, BASE.items)
    rows = _all_rows(ds)
    assert len(rows) == BASE.interactions
    assert sum(s.rows for s in meta.splits.values()) == BASE.interactions
    for split in SPLITS:
        part = rows[rows.split == split]
        assert meta.splits[split].rows == len(part)
        assert meta.splits[split].positives == {t: int(part[t].sum()) for t in meta.tasks}
    assert rows.user.between(0, BASE.users - 1).all()
    assert rows.item.between(0, BASE.items - 1).all()
    schema = pq.read_schema(ds.split_files("train")[0])
    assert [(f.name, str(f.type)) for f in schema] == [
        ("user", "int32"), ("item", "int32"), ("timestamp", "int64"),
        ("click", "int8"), ("like", "int8"), ("follow", "int8"),
    ]
    # Part files never exceed the chunk size.
    for split in SPLITS:
        assert all(pq.read_metadata(p).num_rows <= BASE.chunk_rows for p in ds.split_files(split))
    users, items = ds.users(), ds.items()
    assert users.user.tolist() == list(range(BASE.users))
    assert users.user_id.iloc[:3].tolist() == ["u0", "u1", "u2"]
    assert items.item_id.iloc[-1] == f"i{BASE.items - 1}"
    assert meta.item_features == {"color": 17}
    assert items.color.between(1, 16).all()
    assert ds.vocab("item", "color").code.tolist() == list(range(1, 17))
    # The planted truth is not a side feature.
    assert "community" not in users.columns and "community" not in items.columns


def test_deterministic_for_a_config(base_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(BASE, again)
    files = _data_files(base_dir)
    assert files == _data_files(again)
    for rel in files:
        if rel.suffix == ".parquet":
            assert pq.read_table(base_dir / rel).equals(pq.read_table(again / rel)), rel
        else:
            assert (base_dir / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    generate(replace(BASE, seed=2), other)
    assert not pq.read_table(base_dir / "train/part-00000.parquet").equals(
        pq.read_table(other / "train/part-00000.parquet")
    )
    assert not pq.read_table(base_dir / "planted/users.parquet").equals(
        pq.read_table(other / "planted/users.parquet")
    )


def test_funnel_holds_on_every_row(base_dir: Path) -> None:
    rows = _all_rows(Dataset.open(base_dir))
    labels = rows[["click", "like", "follow"]].to_numpy()
    assert (np.diff(labels, axis=1) <= 0).all()
    # Funnel rates near their targets (20% clicked, 40% of clicks liked, 30% of likes followed).
    click, like, follow = labels.sum(axis=0)
    assert click / len(rows) == pytest.approx(0.2, abs=0.03)
    assert like / click == pytest.approx(0.4, abs=0.05)
    assert follow / like == pytest.approx(0.3, abs=0.06)


def test_time_split(base_dir: Path) -> None:
    ds = Dataset.open(base_dir)
    ts = {s: ds.read_split(s, columns=["timestamp"]).timestamp.to_numpy() for s in SPLITS}
    assert ts["train"].max() < ts["valid"].min()
    assert ts["valid"].max() < ts["test"].min()
    for s in SPLITS:  # in file order, time never goes back
        assert (np.diff(ts[s]) >= 0).all()
    n = BASE.interactions
    assert len(ts["train"]) / n == pytest.approx(0.8, abs=0.002)
    assert len(ts["valid"]) / n == pytest.approx(0.1, abs=0.002)
    assert len(ts["test"]) / n == pytest.approx(0.1, abs=0.002)
    span = ts["test"].max() - ts["train"].min()
    assert span == pytest.approx(30 * 86_400, rel=0.01)


def test_labels_follow_planted_affinity(base_dir: Path) -> None:
    ds = Dataset.open(base_dir)
    planted = load_planted(base_dir)
    rows = _all_rows(ds)
    c_items = BASE.communities
    cell = (
        planted["users"].community.to_numpy()[rows.user] * c_items
        + planted["items"].community.to_numpy()[rows.item]
    )
    reached = np.ones(len(rows), dtype=bool)  # rows positive for the previous task
    for task, min_corr in zip(ds.tasks, (0.9, 0.85, 0.7), strict=True):
        y = rows[task].to_numpy()
        n = np.bincount(cell[reached], minlength=c_items * c_items)
        pos = np.bincount(cell[reached], weights=y[reached], minlength=c_items * c_items)
        enough = n >= 100
        assert enough.sum() >= 6
        affinity = np.asarray(planted["structure"]["affinity"][task]).ravel()
        corr = spearmanr(pos[enough] / n[enough], affinity[enough]).statistic
        assert corr > min_corr, (task, corr)
        reached = y == 1


def test_signal_concentrates_items_on_preferred_communities(tmp_path: Path) -> None:
    concentration = {}
    for signal in (0.05, 0.95):
        out = tmp_path / f"s{signal}"
        generate(preset("tiny", signal=signal, seed=3), out)
        planted = load_planted(out)
        pref = np.asarray(planted["structure"]["preference"])
        rows = Dataset.open(out).read_split("train")
        cu = planted["users"].community.to_numpy()[rows.user]
        ci = planted["items"].community.to_numpy()[rows.item]
        concentration[signal] = (pref[cu, ci].mean(), (pref.argmax(axis=1)[cu] == ci).mean())
    assert concentration[0.95][0] > concentration[0.05][0] + 0.15
    assert concentration[0.95][1] > concentration[0.05][1] + 0.2


@pytest.mark.parametrize("sizes", [None, [5, 1, 300, 2, 700, 1]])
def test_alias_tables_reproduce_the_weights(sizes: list[int] | None) -> None:
    rng = np.random.default_rng(0)
    n = 1_009 if sizes is None else sum(sizes)
    weights = rng.lognormal(0.0, 2.0, n)
    weights[rng.random(n) < 0.1] = 0.0
    seg_sizes = np.array([n] if sizes is None else sizes)
    starts = np.r_[0, np.cumsum(seg_sizes)[:-1]]
    weights[starts] += 1.0  # every segment has mass
    prob, alias = alias_tables(weights, sizes)
    segment = np.repeat(np.arange(seg_sizes.size), seg_sizes)
    assert (segment[alias] == segment).all()
    assert ((prob >= 0) & (prob <= 1)).all()
    # Slot j is drawn with (q_j = n_seg * w_j / W_seg) / n_seg: its own column plus the aliases.
    implied = prob.copy()
    np.add.at(implied, alias, 1.0 - prob)
    expected = weights / np.add.reduceat(weights, starts)[segment] * seg_sizes[segment]
    np.testing.assert_allclose(implied, expected, atol=1e-9)


def test_task_correlation_knob() -> None:
    def corr(rho: float) -> float:
        a = plant_structure(replace(BASE, communities=12, tasks=2, task_correlation=rho)).affinity
        return float(np.corrcoef(a[0].ravel(), a[1].ravel())[0, 1])

    assert corr(1.0) == pytest.approx(1.0)
    assert abs(corr(0.0)) < 0.3
    assert 0.2 < corr(0.5) < 0.8


def test_chunk_size_does_not_change_split_sizes(base_dir: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    meta_small = generate(replace(BASE, chunk_rows=7_777), small)
    meta_base = Dataset.open(base_dir).meta
    assert {s: v.rows for s, v in meta_small.splits.items()} == {
        s: v.rows for s, v in meta_base.splits.items()
    }
    ds = Dataset.open(small)
    assert len(ds.split_files("train")) >= BASE.interactions * 0.8 // 7_777
    assert all(pq.read_metadata(p).num_rows <= 7_777 for p in ds.split_files("train"))
    for task in meta_base.tasks:  # same model, different draws: similar positive counts
        a, b = meta_small.splits["train"].positives[task], meta_base.splits["train"].positives[task]
        assert abs(a - b) < 0.1 * b + 50


def test_tiny_dataset_keeps_every_split(tmp_path: Path) -> None:
    meta = generate(SynthConfig(users=3, items=3, interactions=5, communities=2), tmp_path / "t")
    assert sum(s.rows for s in meta.splits.values()) == 5
    ds = Dataset.open(tmp_path / "t")
    for split in SPLITS:  # an empty split still has a readable (schema-only) part
        assert len(ds.read_split(split)) == meta.splits[split].rows


def test_task_names_and_validation() -> None:
    assert default_task_names(3) == ["click", "like", "follow"]
    assert default_task_names(2) == ["click", "like"]
    assert default_task_names(6)[-1] == "follow"
    assert default_task_names(8) == [f"task{k}" for k in range(8)]
    with pytest.raises(MgoeError, match="communities"):
        SynthConfig(users=3, items=100, interactions=10, communities=8).validate()
    with pytest.raises(MgoeError, match="funnel_rates"):
        SynthConfig(users=30, items=30, interactions=10, funnel_rates=[0.2]).validate()
    with pytest.raises(MgoeError, match="signal"):
        SynthConfig(users=30, items=30, interactions=10, signal=1.5).validate()
    assert (DEMO_CONFIG.users, DEMO_CONFIG.items, DEMO_CONFIG.interactions) == (5_000, 2_000, 300_000)
    assert (DEMO_CONFIG.tasks, DEMO_CONFIG.communities) == (3, 8)


def test_cli_synth_then_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["data", "synth", "--users", "300", "--items", "120", "--interactions", "5000",
            "--tasks", "2", "--communities", "3", "--seed", "7", "--output", str(out), "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(["data", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["users"] == 300 and info["items"] == 120
    assert info["tasks"] == ["click", "like"]
    assert sum(s["rows"] for s in info["splits"].values()) == 5000
    assert main(["data", "synth", "--users", "2", "--items", "120", "--interactions", "50",
                 "--output", str(tmp_path / "bad"), "--quiet"]) == 2
    assert not (tmp_path / "bad").exists()

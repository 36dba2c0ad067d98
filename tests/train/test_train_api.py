"""The run-directory API and the train/evaluate/predict commands, on a saved in-memory source
and end to end on a prepared dataset with macro graphs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import torch
from train_helpers import make_source

from mgoe.errors import MgoeError
from mgoe.train import api
from mgoe.train.commands import register
from mgoe.train.sources import TensorBatchSource

FAST = {"model": "mmoe", "batch_size": 128, "epochs": 2, "lr": 0.01, "num_threads": 1,
        "log_every": 0, "model_config": {"embedding_dim": 8}}


@pytest.fixture
def cli(monkeypatch):
    """``mgoe.cli.main`` with the train commands registered (whether or not cli.py wires them)."""
    from mgoe import cli as cli_module

    parser = cli_module.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if "train" not in sub.choices:
        monkeypatch.setattr(cli_module, "_EXTRA_COMMANDS", [*cli_module._EXTRA_COMMANDS, register])
    return cli_module.main


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    data = make_source().save(tmp / "data")
    metrics = api.train(data, output=tmp / "run", config=FAST, progress=False)
    return tmp, data, tmp / "run", metrics


def test_saved_source_round_trips(tmp_path):
    source = make_source(macro=True)
    reopened = TensorBatchSource.open(source.save(tmp_path / "src"))
    assert reopened.spec == source.spec and reopened.user_ids == source.user_ids
    for split in ("train", "test"):
        a = next(source.batches(split, 100, shuffle=True, seed=5, start=2))
        b = next(reopened.batches(split, 100, shuffle=True, seed=5, start=2))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_source_batches_follow_the_contract():
    source = make_source(macro=True)
    full = list(source.batches("train", 64, shuffle=True, seed=1))
    rest = list(source.batches("train", 64, shuffle=True, seed=1, start=3))
    assert len(rest) == len(full) - 3 and torch.equal(rest[0]["user"], full[3]["user"])
    users = torch.cat([b["user"] for b in full])
    assert sorted(users.tolist()) == sorted(source.splits["train"]["user"].tolist())
    b = full[0]
    spec = source.spec
    assert b["user_first"].shape == (64, len(spec.graphs), spec.num_item_macro)
    # table lookups: the user's own community feature and macro node
    u = b["user"].numpy()
    assert np.array_equal(b["user_features"].numpy(), source.user_table["user_features"][u])
    assert np.array_equal(b["user_macro"].numpy(), source.user_table["user_macro"][u])
    # unknown ids fall back to the spare row, cold macro node and empty counts
    pair = next(source.pair_batches(["u3", "stranger"], ["nothing", "i4"]))
    assert pair["user"].tolist() == [3, spec.num_users - 1]
    assert pair["item"].tolist() == [spec.num_items - 1, 4]
    assert pair["user_macro"][1] == spec.num_user_macro - 1 and pair["user_first"][1].sum() == 0
    assert pair["item_macro"][0] == spec.num_item_macro - 1 and pair["item_second"][0].sum() == 0
    assert "labels" not in pair


def test_evaluate_reproduces_the_run_metrics(saved_run):
    _, _, run, metrics = saved_run
    assert api.evaluate(run, "test") == {"test": metrics["test"]}
    assert api.evaluate(run, "valid") == {"valid": metrics["valid"]}
    with pytest.raises(MgoeError, match="split must be one of"):
        api.evaluate(run, "holdout")


def test_predict_scores_pairs_like_the_model(saved_run):
    _, data, run, _ = saved_run
    model, source = api.load_model(run)
    pairs = pd.DataFrame({"user_id": ["u1", "u2", "nobody"], "item_id": ["i5", "i6", "i7"]})
    scores = api.predict(run, pairs)
    assert list(scores.columns) == ["user_id", "item_id", "click", "buy"]
    assert scores["user_id"].tolist() == ["u1", "u2", "nobody"]
    expected = model.predict_proba(next(source.pair_batches(pairs.user_id, pairs.item_id))).detach()
    np.testing.assert_allclose(scores[["click", "buy"]].to_numpy(), expected.numpy(), rtol=1e-6)
    with pytest.raises(MgoeError, match="missing item_id"):
        api.predict(run, pd.DataFrame({"user_id": ["u1"]}))


def test_load_model_checks_the_source(saved_run):
    _, _, run, _ = saved_run
    with pytest.raises(MgoeError, match="does not match the run"):
        api.load_model(run, source=make_source(users=30))
    with pytest.raises(MgoeError, match="not a training run directory"):
        api.load_model(run.parent / "data")


def test_resume_reuses_the_runs_data_and_config(saved_run, tmp_path):
    _, data, _, _ = saved_run
    first = api.train(data, output=tmp_path / "run", config=FAST, progress=False)
    resumed = api.train(None, output=tmp_path / "run", resume=True, progress=False, epochs=3)
    assert resumed["epochs_run"] == 3
    assert [h["train_loss"] for h in resumed["history"][:2]] == [h["train_loss"] for h in first["history"]]


def test_macro_model_without_graph_is_refused(saved_run, tmp_path):
    _, data, _, _ = saved_run
    with pytest.raises(MgoeError, match="needs macro graph features: pass the graph directory"):
        api.train(data, output=tmp_path / "run", config={**FAST, "model": "mgoe"}, progress=False)


# ----------------------------------------------------------------------------- commands


def test_cli_evaluate_json_and_table(saved_run, cli, capsys):
    _, _, run, metrics = saved_run
    assert cli(["evaluate", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"test": metrics["test"]}
    assert cli(["evaluate", str(run), "--split", "valid"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["split", "task", "auc", "gauc", "logloss"]
    assert out[1].split()[:3] == ["valid", "click", f"{metrics['valid']['click']['auc']:.4f}"]


def test_cli_predict_csv_to_parquet(saved_run, cli, tmp_path):
    _, _, run, _ = saved_run
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"user_id": ["u1", "u9"], "item_id": ["i2", "zzz"]}).to_csv(pairs, index=False)
    out = tmp_path / "scores.parquet"
    assert cli(["predict", str(run), "--input", str(pairs), "--output", str(out)]) == 0
    scores = pd.read_parquet(out)
    expected = api.predict(run, pd.read_csv(pairs, dtype=str))
    pd.testing.assert_frame_equal(scores, expected)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_cli_errors_are_one_line_exit_2(saved_run, cli, tmp_path, capsys):
    _, data, _, _ = saved_run
    config = tmp_path / "bad.yaml"
    config.write_text("epochs: 2\nbatchsize: 64\n")
    code = cli(["train", "--data", str(data), "--output", str(tmp_path / "r"), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "'batchsize'" in err and str(config) in err and len(err.strip().splitlines()) == 1
    assert cli(["predict", str(tmp_path / "nowhere"), "--input", str(config), "--output", "x.parquet"]) == 2


def test_cli_print_config(cli, capsys):
    assert cli(["train", "--print-config"]) == 0
    assert "l2_embedding: 1.0e-06" in capsys.readouterr().out


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from mgoe.data.prepare import PrepareOptions, RawDataset, prepare_dataset
    from mgoe.graph.build import GraphConfig, build_graph

    tmp = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(0)
    n = 1500
    user = rng.integers(0, 60, n)
    item = rng.integers(0, 40, n)
    frame = pd.DataFrame({"user_id": [f"u{v}" for v in user], "item_id": [f"i{v}" for v in item]})
    click = rng.random(n) < np.where(user % 3 == item % 3, 0.9, 0.2)
    frame["click"] = click.astype(int)
    frame["buy"] = (click & (rng.random(n) < 0.5)).astype(int)
    frame = frame[frame.click == 1]
    raw = RawDataset(name="toy", interactions=frame, tasks=["click", "buy"], negatives="sampled")
    prepare_dataset(raw, tmp / "data", PrepareOptions(split="random", negatives_per_positive=2))
    build_graph(tmp / "data", tmp / "graph", GraphConfig(user_clusters=4, item_clusters=3),
                progress=False)
    return tmp


def test_end_to_end_on_a_prepared_dataset(prepared, cli, tmp_path, capsys):
    run = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text('model = "mgoe"\nbatch_size = 64\nepochs = 2\nnum_threads = 1\nlog_every = 0\n'
                      "[model_config]\nembedding_dim = 8\n")
    assert cli(["train", "--data", str(prepared / "data"), "--graph", str(prepared / "graph"),
                "--output", str(run), "--config", str(config), "--quiet"]) == 0
    assert "best epoch" in capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    stored = json.loads((run / "config.json").read_text())
    assert stored["source"]["kind"] == "dataset"
    assert stored["source"]["graph_dir"] == str((prepared / "graph").resolve())
    assert stored["spec"]["graphs"] == ["merged", "click", "buy"]
    assert api.evaluate(run, "test") == {"test": metrics["test"]}
    pairs = pd.DataFrame({"user_id": ["u1", "u2", "unknown"], "item_id": ["i1", "i4", "i1"]})
    scores = api.predict(run, pairs)
    assert scores[["click", "buy"]].notna().all().all()
    assert ((scores[["click", "buy"]] > 0) & (scores[["click", "buy"]] < 1)).all().all()


def test_kill_and_resume_on_a_prepared_dataset(prepared, tmp_path):
    """Exact resume with the real input pipeline (leave-one-out macro features, mgoe)."""
    from mgoe.train.config import TrainConfig
    from mgoe.train.inputs import BatchSource
    from mgoe.train.trainer import train

    config = TrainConfig.from_dict({
        "model": "mgoe", "batch_size": 64, "epochs": 2, "num_threads": 1, "log_every": 0,
        "patience": 0, "checkpoint_every_batches": 2,
        "model_config": {"embedding_dim": 8, "dropout": 0.2}})
    source = BatchSource.open(prepared / "data", prepared / "graph")
    reference = train(source, tmp_path / "a", config, progress=False)

    def kill(epoch: int, batch: int, loss: float) -> None:
        if (epoch, batch) == (1, 4):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(source, tmp_path / "b", config, progress=False, on_batch_end=kill)
    resumed = train(BatchSource.open(prepared / "data", prepared / "graph"), tmp_path / "b",
                    config, resume=True, progress=False)
    drop = {"train_seconds", "eval_seconds"}
    assert resumed["test"] == reference["test"] and resumed["valid"] == reference["valid"]
    assert [{k: v for k, v in h.items() if k not in drop} for h in resumed["history"]] == \
        [{k: v for k, v in h.items() if k not in drop} for h in reference["history"]]

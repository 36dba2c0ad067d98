"""`mgoe bench` end to end on tiny synthetic data: results, report, plots, resumability."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mgoe.bench import ABLATIONS, run_bench
from mgoe.bench.runner import (
    DatasetSpec,
    base_config,
    graph_config,
    graph_dir,
    parse_dataset,
    resolve_variants,
    run_config,
    split_datasets,
)
from mgoe.cli import main
from mgoe.errors import MgoeError

SPEC = "synth:tiny:interactions=6000,users=300,items=120"
DATASET = "synth-tiny-interactions6000-users300-items120"
TASKS = ["click", "like", "follow"]
MODELS = ["mgoe", "mmoe"]
SEEDS = [0, 1]
CONFIG = {"num_threads": 1, "batch_size": 256, "log_every": 0}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bench") / "b"
    config = out.parent / "train.json"
    config.write_text(json.dumps(CONFIG))
    assert main(["bench", "--datasets", SPEC, "--models", ",".join(MODELS), "--seeds", "0,1",
                 "--output", str(out), "--epochs", "1", "--config", str(config), "--quiet"]) == 0
    return out


def _runs(out: Path) -> list[Path]:
    return [out / "runs" / DATASET / m / f"seed{s}" for m in MODELS for s in SEEDS]


def test_layout_and_budget(bench):
    assert (bench / "data" / DATASET / "_COMPLETE").is_file()
    assert (bench / "graphs" / DATASET / "_COMPLETE").is_file()
    for run in _runs(bench):
        assert (run / "metrics.json").is_file() and (run / "bench.json").is_file()
        stored = json.loads((run / "config.json").read_text())
        # macro models get the graph, the others do not
        expected = str((bench / "graphs" / DATASET).resolve()) if run.parent.name == "mgoe" else None
        assert stored["source"]["graph_dir"] == expected
        assert stored["train"]["epochs"] == 1 and stored["train"]["batch_size"] == 256
    config = json.loads((bench / "bench_config.json").read_text())
    assert config["search_space"] == "no per-model tuning; defaults of each model's config; same budget"
    assert config["budget"]["epochs"] == 1 and config["budget"]["batch_size"] == 256
    assert list(config["variants"]) == MODELS
    assert config["variants"]["mgoe"]["model_config"]["cross_task_tower"] is True
    assert config["datasets"][DATASET]["spec"] == SPEC


def test_results_csv(bench):
    frame = pd.read_csv(bench / "results.csv")
    keys = set(zip(frame.model, frame.seed, frame.task, strict=True))
    assert keys == {(m, s, t) for m in MODELS for s in SEEDS for t in TASKS}
    assert len(frame) == len(keys)
    assert (frame.dataset == DATASET).all()
    assert frame.auc.between(0, 1).all() and frame.gauc.dropna().between(0, 1).all()
    assert (frame.logloss > 0).all()
    assert (frame.train_samples_per_s > 0).all() and (frame.wall_s > 0).all()
    assert (frame.epochs_run == 1).all() and (frame.best_epoch == 1).all()


def test_markdown_table_is_complete(bench):
    text = (bench / "results.md").read_text()
    assert "no per-model tuning" in text and "## Where MGOE loses" in text
    lines = text.splitlines()
    start = lines.index(f"## {DATASET}")
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    assert header == ["model", "seeds", *[f"{t} {m}" for t in TASKS
                                          for m in ("AUC", "GAUC", "log-loss")],
                      "samples/s", "epochs"]
    rows = {}
    for line in lines[start + 4:start + 4 + len(MODELS)]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0].strip("`")] = cells
    assert set(rows) == set(MODELS)
    cell = re.compile(r"(\*\*)?(\d\.\d{4}) ± (\d\.\d{4})(\*\*)?")
    bold = {t: 0 for t in TASKS}
    for model, cells in rows.items():
        assert cells[1] == "2"
        for k, task in enumerate(TASKS):
            for j in range(3):
                m = cell.fullmatch(cells[2 + 3 * k + j])
                assert m, (model, task, cells[2 + 3 * k + j])
                if j == 0 and m.group(1):
                    bold[task] += 1
    assert all(n >= 1 for n in bold.values())  # the best AUC of every task is bold


def test_plots_are_png(bench):
    for name in (f"{DATASET}-test-auc.png", f"{DATASET}-valid-auc.png"):
        data = (bench / "plots" / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        assert f"plots/{name}" in (bench / "results.md").read_text()


def test_rerun_skips_finished_runs_and_resumes_interrupted_ones(bench):
    before = {run: (run / "metrics.json").stat().st_mtime_ns for run in _runs(bench)}
    logs = {run: (run / "log.txt").read_text() for run in _runs(bench)}
    # an interrupted run: its checkpoint is there, its metrics.json is not
    interrupted = _runs(bench)[0]
    (interrupted / "metrics.json").unlink()
    frame = run_bench([SPEC], MODELS, SEEDS, bench, epochs=1, config=CONFIG, progress=False)
    assert frame.attrs["trained"] == [str(interrupted)]
    assert len(frame.attrs["skipped"]) == len(_runs(bench)) - 1
    for run in _runs(bench)[1:]:
        assert (run / "metrics.json").stat().st_mtime_ns == before[run]
        assert (run / "log.txt").read_text() == logs[run]
    log = (interrupted / "log.txt").read_text()
    assert "resumed from" in log and log.count("start: model") == 1
    assert len(frame) == len(MODELS) * len(SEEDS) * len(TASKS)


def test_other_budget_is_refused(bench):
    with pytest.raises(MgoeError, match="another budget.*epochs: 1 -> 2"):
        run_bench([SPEC], MODELS, SEEDS, bench, epochs=2, config=CONFIG, progress=False)


def test_report_only(bench, capsys):
    (bench / "results.md").unlink()
    assert main(["bench", "--output", str(bench), "--report-only"]) == 0
    assert "report of 4 runs" in capsys.readouterr().out
    assert (bench / "results.md").is_file()


def test_ablation_variants(bench):
    from mgoe.bench.runner import _build_graphs

    variants = resolve_variants(["mgoe"], ablations=True)
    assert [v.name for v in variants] == ["mgoe", *ABLATIONS]
    base = base_config(CONFIG, epochs=1)
    flags = {v.name: run_config(base, v, 3).model_config for v in variants}
    assert flags["mgoe-no-mtmg"] == {"use_merged_graph": False}
    assert flags["mgoe-merged-only"] == {"task_specific_graphs": False}
    assert flags["mgoe-plain-towers"] == {"cross_task_tower": False}
    assert flags["mgoe-released-attention"] == {"released_macgnn_attention": True}
    assert run_config(base, variants[1], 3).seed == 3
    by_name = {v.name: v for v in variants}
    assert graph_dir(bench, "d", by_name["mgoe-unweighted-grouping"]) == bench / "graphs" / "d-unweighted"
    assert graph_dir(bench, "d", by_name["mgoe-no-loo-assignment"]) == bench / "graphs" / "d-no-loo"
    assert graph_config(by_name["mgoe-no-balanced-loo"]).balanced_leave_one_out is False
    assert graph_config(by_name["mgoe-no-loo-assignment"]).loo_assignment is False
    assert graph_config(by_name["mgoe"]).balanced_leave_one_out is True
    graphs = _build_graphs(DatasetSpec(DATASET, "synth", SPEC), bench / "data" / DATASET,
                           [by_name["mgoe-unweighted-grouping"]], bench, lambda _: None, False)
    assert list(graphs) == ["unweighted"]
    manifest = json.loads((graphs["unweighted"] / "manifest.json").read_text())
    assert manifest["config"]["weighted"] is False


def test_dataset_specs(tmp_path):
    ds = parse_dataset("beibei", data_root=tmp_path)
    assert ds.source == "beibei" and ds.input == tmp_path / "ghcf-multibehavior" / "Beibei"
    assert parse_dataset("tmall=/x/y").input == Path("/x/y")
    synth = parse_dataset("synth:tiny:signal=0.2,task_correlation=0.9")
    assert synth.name == "synth-tiny-signal0.2-task_correlation0.9"
    assert synth.synth == {"preset": "tiny", "signal": 0.2, "task_correlation": 0.9}
    assert split_datasets("beibei,synth:tiny:signal=0.2,task_correlation=0.9,tmall=/x,"
                          "synth:demo") == ["beibei", "synth:tiny:signal=0.2,task_correlation=0.9",
                                            "tmall=/x", "synth:demo"]
    for bad, message in [("synth:huge", "unknown synthetic preset"),
                         ("synth:tiny:colour=3", "unknown synthetic setting 'colour'"),
                         ("nothing-here", "unknown dataset"),
                         ("table", "no default input"),
                         ("foo=/x", "not a source")]:
        with pytest.raises(MgoeError, match=message):
            parse_dataset(bad)
    with pytest.raises(MgoeError, match="not shared by every model"):
        base_config({"model_config": {"num_experts": 2}})


def test_cli_errors(tmp_path, capsys):
    assert main(["bench", "--datasets", SPEC, "--models", "mgoe,nope", "--output",
                 str(tmp_path / "b")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["bench", "--datasets", "movielens100k", "--models", "mmoe", "--output",
                 str(tmp_path / "b"), "--data-root", str(tmp_path / "nowhere"), "--quiet"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_failed_run_does_not_stop_the_bench(bench, tmp_path, capsys):
    """A run whose training raises is recorded (bench_error.txt, report, exit 1); the
    prepared data is shared with the module's bench (shared_data)."""
    out = tmp_path / "failing"
    config = {**CONFIG, "task_weights": [1.0, 2.0]}  # 2 weights for 3 tasks: fails in training
    frame = run_bench([SPEC], ["mmoe"], [0, 1], out, epochs=1, config=config, shared_data=bench,
                      progress=False)
    assert frame.empty and len(frame.attrs["failed"]) == 2
    assert not (out / "data").exists()  # the shared dataset was used, not prepared again
    message = (out / "runs" / DATASET / "mmoe" / "seed1" / "bench_error.txt").read_text()
    assert "task_weights has 2 values" in message
    assert "task_weights has 2 values" in (out / "results.md").read_text()
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    assert main(["bench", "--datasets", SPEC, "--models", "mmoe", "--seeds", "0", "--output",
                 str(out), "--config", str(path), "--epochs", "1", "--shared-data", str(bench),
                 "--quiet"]) == 1
    assert "failed: task_weights has 2 values" in capsys.readouterr().err


def test_budget_line_states_the_step_cap():
    from mgoe.bench.report import _budget_lines

    train = {"epochs": 4, "batch_size": 1024, "lr": 1e-3, "l2_embedding": 1e-6,
             "early_stopping_metric": "auc", "patience": 2, "min_delta": 0.0, "model_config": {}}
    plain = _budget_lines({"train": train})[2]
    assert "at most 4 epochs, batch 1024" in plain and "batches" not in plain
    capped = _budget_lines({"train": {**train, "max_batches_per_epoch": 500}})[2]
    assert "at most 4 epochs of at most 500 batches" in capped


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    """Bench processes sharing an output: a run whose lock is held elsewhere is not trained."""
    import fcntl

    out = tmp_path / "b"
    locks = out / "locks"
    locks.mkdir(parents=True)
    with open(locks / f"{DATASET}--mmoe--seed0.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as another process would hold it
        result = run_bench([SPEC], ["mmoe"], [0, 1], out, epochs=1, config=dict(CONFIG),
                           progress=False)
    assert result.attrs["busy"] == [str(out / "runs" / DATASET / "mmoe" / "seed0")]
    assert result.attrs["trained"] == [str(out / "runs" / DATASET / "mmoe" / "seed1")]
    assert not (out / "runs" / DATASET / "mmoe" / "seed0").exists()
    assert sorted(set(result.seed)) == [1]
    again = run_bench([SPEC], ["mmoe"], [0, 1], out, epochs=1, config=dict(CONFIG), progress=False)
    assert again.attrs["trained"] == [str(out / "runs" / DATASET / "mmoe" / "seed0")]
    assert again.attrs["busy"] == [] and sorted(set(again.seed)) == [0, 1]

"""`mgoe demo` runs the whole pipeline (small size) and MGOE learns the planted structure."""

from __future__ import annotations

import json

from mgoe.cli import main


def test_demo_end_to_end(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--output", str(out), "--interactions", "60000", "--epochs", "2", "--batch-size", "256", "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "[4/4] test metrics" in printed
    for model in ("mgoe", "mmoe"):
        metrics = json.loads((out / "runs" / model / "metrics.json").read_text())
        for task in ("click", "like", "follow"):
            # the planted communities make every task learnable above chance, even this small
            assert metrics["test"][task]["auc"] > 0.55, (model, task, metrics["test"][task])
            assert 0 < metrics["test"][task]["logloss"] < 1
    # a second run reuses the dataset and the unchanged graph
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "reusing the existing dataset" in again and "reusing the finished run" in again

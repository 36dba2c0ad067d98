"""The top-level Python API mirrors the CLI, end to end on a small synthetic dataset."""

from __future__ import annotations

import pandas as pd

import mgoe


def test_python_api_end_to_end(tmp_path):
    mgoe.synth(tmp_path / "d", users=300, items=120, interactions=20_000, communities=4)
    manifest = mgoe.build_graph(tmp_path / "d", tmp_path / "g", user_clusters=6, item_clusters=5)
    assert manifest["num_user_macro"] == 7 and manifest["graphs"][0] == "merged"
    metrics = mgoe.train(tmp_path / "d", tmp_path / "g", output=tmp_path / "run", epochs=1,
                         progress=False, config={"num_threads": 1, "batch_size": 256})
    evaluated = mgoe.evaluate(tmp_path / "run", split="test")
    for task, values in metrics["test"].items():
        assert abs(evaluated["test"][task]["auc"] - values["auc"]) < 1e-9
    scores = mgoe.predict(tmp_path / "run", pd.DataFrame({"user_id": ["u1", "u2", "nobody"], "item_id": ["i3", "i4", "i5"]}))
    assert list(scores.columns[:2]) == ["user_id", "item_id"] and len(scores) == 3
    assert ((scores.iloc[:, 2:] > 0) & (scores.iloc[:, 2:] < 1)).all().all()
    # mgoe.train is still the package with its submodules
    from mgoe.train import api

    assert api.train is not None and callable(mgoe.train)

"""``mgoe export`` and artifact loading: round trip, self-containment, refusal of damaged ones."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from mgoe.cli import main
from mgoe.errors import MgoeError
from mgoe.serve.artifact import export_run, open_artifact, sha256_file
from mgoe.serve.scorer import Scorer
from mgoe.train import api


def test_export_round_trip_is_self_contained(world, tmp_path):
    art = world.artifacts["mgoe"]
    manifest = json.loads((art / "manifest.json").read_text())
    files = manifest["files"]
    # every file except the manifest and the completion marker is listed with its hash and size
    on_disk = {p.relative_to(art).as_posix() for p in art.rglob("*") if p.is_file()}
    assert on_disk - set(files) == {"manifest.json", "_COMPLETE"}
    for rel, info in files.items():
        assert (art / rel).stat().st_size == info["size"] and sha256_file(art / rel) == info["sha256"]
    assert {"model/weights.safetensors", "data/users.parquet", "data/items.parquet", "graph/edges.parquet",
            "graph/user_macro.parquet", "graph/features/user_first.parquet"} <= set(files)
    assert not any(name.endswith((".pkl", ".pt", ".pickle")) for name in files)
    assert manifest["model"]["name"] == "mgoe" and manifest["tasks"] == ["click", "like", "follow"]
    assert manifest["mgoe_version"] and manifest["data_fingerprint"] and manifest["graph_fingerprint"]
    # the weights are the run's best weights, byte for byte
    assert sha256_file(world.runs["mgoe"] / "checkpoints/best.safetensors") == files["model/weights.safetensors"]["sha256"]
    # moved away from the run, data and graph: still loads and scores like the run
    moved = tmp_path / "moved"
    shutil.copytree(art, moved)
    scorer = Scorer.load(moved)
    model, _ = api.load_model(world.runs["mgoe"])
    for (name, a), (_, b) in zip(scorer.model.state_dict().items(), model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    pairs = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["i3", "i4"]})
    ref = api.predict(world.runs["mgoe"], pairs)
    got = scorer.score_pairs(pairs["user_id"], pairs["item_id"])
    for task in scorer.tasks:
        np.testing.assert_allclose(got[task], ref[task].to_numpy(), atol=1e-6)


def _copy(world, tmp_path, name="mgoe"):
    dst = tmp_path / f"art-{name}"
    shutil.copytree(world.artifacts[name], dst)
    return dst


def test_tampered_file_is_refused_naming_it(world, tmp_path):
    art = _copy(world, tmp_path)
    target = art / "graph/features/user_first.parquet"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01  # one changed byte, same size
    target.write_bytes(bytes(data))
    with pytest.raises(MgoeError, match=r"graph/features/user_first\.parquet is damaged \(SHA-256"):
        Scorer.load(art)


def test_missing_and_truncated_files_are_refused_naming_them(world, tmp_path):
    art = _copy(world, tmp_path)
    (art / "data/items.parquet").unlink()
    with pytest.raises(MgoeError, match=r"data/items\.parquet is missing"):
        open_artifact(art)
    art = _copy(world, tmp_path, "mmoe")
    weights = art / "model/weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(MgoeError, match=r"model/weights\.safetensors is damaged \(size"):
        open_artifact(art, verify=False)  # sizes are checked even without hashing


def test_mismatched_or_foreign_artifacts_are_refused(world, tmp_path):
    art = _copy(world, tmp_path)
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["format_version"] = 99
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(MgoeError, match="artifact format version 99"):
        open_artifact(art)
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(MgoeError, match="damaged manifest"):
        open_artifact(art)
    with pytest.raises(MgoeError, match="not a serving artifact"):
        open_artifact(world.data)
    with pytest.raises(MgoeError, match="no such artifact"):
        open_artifact(tmp_path / "nothing")


def test_export_refuses_a_run_without_weights_and_the_cli_reports_one_line(world, tmp_path, capsys):
    with pytest.raises(MgoeError, match="not a training run directory"):
        export_run(tmp_path, tmp_path / "out")
    assert main(["export", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mgoe: error:") and "\n" not in err
    assert main(["export", str(world.runs["mmoe"]), "--output", str(tmp_path / "ok")]) == 0
    assert "exported mmoe" in capsys.readouterr().out
    assert open_artifact(tmp_path / "ok").manifest["graph"] is None

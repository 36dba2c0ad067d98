"""Fixtures of the serving tests: a tiny synthetic dataset with macro graphs, an MGOE run (with
graphs) and an MMoE run (ids only), both exported as artifacts. Built once per session."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from serve_helpers import FAST

from mgoe.data.synth import generate, preset
from mgoe.graph.build import GraphConfig, build_graph
from mgoe.serve.artifact import export_run
from mgoe.train import api


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> SimpleNamespace:
    root: Path = tmp_path_factory.mktemp("serve")
    data, graph = root / "data", root / "graph"
    generate(preset("tiny", interactions=8000), data)
    build_graph(data, graph, GraphConfig(user_clusters=6, item_clusters=5))
    api.train(data, graph, output=root / "run-mgoe", model="mgoe", epochs=1, config=FAST, progress=False)
    api.train(data, None, output=root / "run-mmoe", model="mmoe", epochs=1, config=FAST, progress=False)
    export_run(root / "run-mgoe", root / "art-mgoe")
    export_run(root / "run-mmoe", root / "art-mmoe")
    return SimpleNamespace(root=root, data=data, graph=graph,
                           runs={"mgoe": root / "run-mgoe", "mmoe": root / "run-mmoe"},
                           artifacts={"mgoe": root / "art-mgoe", "mmoe": root / "art-mmoe"})

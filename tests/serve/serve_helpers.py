"""Helpers of the serving tests: a fast training config, brute-force first-order features
from an edge list, and a real ``mgoe serve`` process on a free loopback port."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import scipy.sparse as sp

from mgoe.graph.features import graph_features
from mgoe.graph.merge import score_table

FAST = {"num_threads": 1, "batch_size": 256, "log_every": 0, "checkpoint_every_minutes": 0.0,
        "model_config": {"embedding_dim": 8}}


def brute_first_order(artifact: Path, events: list[tuple[int, int, int]], extra_users: int = 0,
                      extra_items: int = 0) -> dict[str, np.ndarray]:
    """First-order features ``[nodes, G, K]`` of the artifact's history edges plus ``events``
    (user index, item index, task bits; OR-ed into the pair's mask), recomputed from scratch
    with :func:`graph_features` on the edge list. Indices ``n + 1 ..`` are online-only ids,
    assigned to the cold macro node (index ``n`` is the never-used fallback row)."""
    manifest = json.loads((artifact / "manifest.json").read_text())
    info = manifest["graph"]
    tasks = manifest["tasks"]
    ku, ki = info["num_user_macro"], info["num_item_macro"]
    n_users = info["num_users"] + 1 + extra_users
    n_items = info["num_items"] + 1 + extra_items
    user_macro = np.full(n_users, ku - 1)
    item_macro = np.full(n_items, ki - 1)
    user_macro[: info["num_users"]] = pd.read_parquet(artifact / "graph/user_macro.parquet")["macro"]
    item_macro[: info["num_items"]] = pd.read_parquet(artifact / "graph/item_macro.parquet")["macro"]
    edges = pd.read_parquet(artifact / "graph/edges.parquet")
    masks = {(int(u), int(i)): int(m) for u, i, m in zip(edges["user"], edges["item"], edges["mask"], strict=True)}
    for u, i, bits in events:
        masks[(u, i)] = masks.get((u, i), 0) | bits
    users = np.array([k[0] for k in masks])
    items = np.array([k[1] for k in masks])
    mask = np.array(list(masks.values()))
    scores = score_table(tasks, info["beta"], info["ranking"])
    per_graph = [scores[mask].astype(np.float64)] + [((mask >> t) & 1).astype(np.float64) for t in range(len(tasks))]
    out = {"user_first": np.zeros((n_users, len(per_graph), ki)), "item_first": np.zeros((n_items, len(per_graph), ku))}
    for g, w in enumerate(per_graph):
        adjacency = sp.csr_matrix((w, (users, items)), shape=(n_users, n_items))
        feats = graph_features(adjacency, user_macro, item_macro, ku, ki)
        out["user_first"][:, g] = feats["user_first"].toarray()
        out["item_first"][:, g] = feats["item_first"].toarray()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m mgoe.cli serve ARTIFACT`` on a free loopback port, waited for until healthy."""

    def __init__(self, artifact: Path, event_log: Path | None = None, *extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mgoe.cli", "serve", str(artifact), "--port", str(self.port), *extra]
        if event_log is not None:
            cmd += ["--event-log", str(event_log)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read().decode()}")
            try:
                if self.client.get("/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("server did not become healthy in 60 s")
            time.sleep(0.1)

    def kill9(self) -> None:
        self.proc.kill()  # SIGKILL: no shutdown hooks run
        self.proc.wait(10)
        self.client.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.client.close()

"""Tmall multi-behaviour data in the MBGCN layout (tsinghua-fib-lab/MBGCN ``Tmall/``).

Files: ``buy.txt`` (training purchases), ``collect.txt``, ``cart.txt``, ``validation.txt`` and
``test.txt`` (held-out purchases), each ``user item`` per line with 0-based ids;
``data_size.txt`` holds ``#users #items``. Tasks in funnel order: collect, cart, buy. Implicit
feedback: one sample per distinct (user, item) pair with its behaviours as labels; negatives are
sampled. The MBGCN purchase split is one-task only, so samples are re-split per user (80/10/10).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import read_pairs, require_dir, require_file
from mgoe.data.prepare import RawDataset
from mgoe.errors import MgoeError

TASKS = ["collect", "cart", "buy"]
FILES = {"collect": ["collect.txt"], "cart": ["cart.txt"], "buy": ["buy.txt", "validation.txt", "test.txt"]}


def load(input_path: str | Path, **_: object) -> RawDataset:
    root = require_dir(input_path)
    frames = []
    for task, names in FILES.items():
        for name in names:
            pairs = read_pairs(require_file(root, name))
            for t in TASKS:
                pairs[t] = np.int8(t == task)
            frames.append(pairs)
    interactions = pd.concat(frames, ignore_index=True)
    user_universe = item_universe = None
    size_file = root / "data_size.txt"
    if size_file.is_file():
        # MBGCN declares the id space; users/items without interactions still count.
        n_users, n_items = (int(v) for v in size_file.read_text().split()[:2])
        over_u = interactions["user_id"].max() >= n_users
        over_i = interactions["item_id"].max() >= n_items
        if over_u or over_i:
            raise MgoeError(f"{size_file}: ids exceed the declared size {n_users} x {n_items}")
        user_universe, item_universe = np.arange(n_users), np.arange(n_items)
    return RawDataset(
        name="tmall",
        interactions=interactions,
        tasks=TASKS,
        negatives="sampled",
        source=str(root),
        default_split="random",
        user_universe=user_universe,
        item_universe=item_universe,
    )

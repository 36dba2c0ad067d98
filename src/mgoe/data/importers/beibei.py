"""Beibei multi-behaviour data in the GHCF layout (chenchongthu/GHCF ``Data/Beibei/``).

Files: ``train.txt`` (purchases, training part), ``cart.txt`` (add-to-cart) and ``test.txt``
(one held-out purchase per user), each an adjacency list with one line per user,
``user item item ...``, space-separated 0-based ids. Tasks in funnel order: cart, buy, where
buy = train.txt ∪ test.txt. Implicit feedback: one sample per distinct (user, item) pair with
its behaviours as labels, negatives are sampled. The GHCF hold-out is one-task (buy only), so
samples are re-split per user at random (80/10/10) like Tmall. 21,716 users / 7,977 items.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mgoe.data.importers._common import read_adjacency, require_dir, require_file
from mgoe.data.prepare import RawDataset

TASKS = ["cart", "buy"]
FILES = {"cart": ["cart.txt"], "buy": ["train.txt", "test.txt"]}


def load(input_path: str | Path, **_: object) -> RawDataset:
    root = require_dir(input_path)
    frames = []
    for task, names in FILES.items():
        for name in names:
            pairs = read_adjacency(require_file(root, name))
            for t in TASKS:
                pairs[t] = np.int8(t == task)
            frames.append(pairs)
    return RawDataset(
        name="beibei",
        interactions=pd.concat(frames, ignore_index=True),
        tasks=TASKS,
        negatives="sampled",
        source=str(root),
        default_split="random",
    )

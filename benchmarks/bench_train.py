"""Training throughput: MGOE against a plain MMoE, side by side in one process, plus two pitfalls.

    python benchmarks/bench_train.py --data DATA --graph GDIR [--batches 200] [--threads 1]

Reported, all on the same batches of the training split, interleaved in rounds so that machine
noise hits every variant alike:

1. model step (forward, backward, Adam) in samples/s for ``mgoe`` and ``mmoe`` (the same
   embedding size and expert widths; MGOE's extra cost is the macro attention and its experts);
2. end-to-end (batch assembly from the tables + model step) for both;
3. batch assembly vectorised (``BatchSource``) against one sample at a time (a per-row
   ``__getitem__`` collated into a batch, what a naive torch ``Dataset`` does);
4. the MGOE step with flush-to-zero of denormal floats on and off.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from mgoe.models import build_model
from mgoe.train.inputs import BatchSource


def step_fn(model, optimiser):
    def step(batch):
        logits = model(batch)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, batch["labels"])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    return step


def per_sample_batches(source: BatchSource, rows: dict, batch_size: int, n_batches: int):
    """The naive path: assemble every sample alone, then stack (what __getitem__ + collate does)."""
    for b in range(n_batches):
        samples = []
        for r in range(b * batch_size, (b + 1) * batch_size):
            samples.append(source._assemble(rows["user"][r : r + 1], rows["item"][r : r + 1],
                                            rows["context"][r : r + 1], rows["labels"][r : r + 1], True))
        yield {k: torch.cat([s[k] for s in samples]) for k in samples[0]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--graph", required=True)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    source = BatchSource.open(args.data, args.graph)
    bs, nb = args.batch_size, args.batches
    t0 = time.perf_counter()
    batches = []
    for batch in source.batches("train", bs, shuffle=True, seed=0):
        batches.append(batch)
        if len(batches) == nb:
            break
    assemble_vectorised = nb * bs / (time.perf_counter() - t0)
    plain = BatchSource.open(args.data)  # what MMoE reads: no macro features
    t0 = time.perf_counter()
    for k, _ in enumerate(plain.batches("train", bs, shuffle=True, seed=0)):
        if k + 1 == nb:
            break
    assemble_plain = nb * bs / (time.perf_counter() - t0)
    part = source._parts("train")[0]
    rows = {k: v[: 20 * bs] for k, v in part.items()}
    t0 = time.perf_counter()
    for _ in per_sample_batches(source, rows, bs, 20):
        pass
    assemble_per_sample = 20 * bs / (time.perf_counter() - t0)

    models = {name: build_model(name, source.spec) for name in ("mgoe", "mmoe")}
    steps = {name: step_fn(m, torch.optim.Adam(m.parameters(), 1e-3)) for name, m in models.items()}
    for step in steps.values():  # warm-up
        for batch in batches[:5]:
            step(batch)
    timing = {name: [] for name in steps}
    denormal = {True: [], False: []}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            for batch in batches:
                step(batch)
            timing[name].append(nb * bs / (time.perf_counter() - t0))
        for flush in (True, False):
            torch.set_flush_denormal(flush)
            t0 = time.perf_counter()
            for batch in batches[: nb // 2]:
                steps["mgoe"](batch)
            denormal[flush].append((nb // 2) * bs / (time.perf_counter() - t0))
        torch.set_flush_denormal(True)
    med = {k: float(np.median(v)) for k, v in timing.items()}
    assemble = {"mgoe": assemble_vectorised, "mmoe": assemble_plain}
    e2e = {k: 1 / (1 / v + 1 / assemble[k]) for k, v in med.items()}
    n_params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    print(f"data {args.data}, batch {bs}, {nb} batches x {args.rounds} rounds, {args.threads} thread(s)")
    print("| measure | mgoe | mmoe | mgoe / mmoe cost |")
    print("|---|---:|---:|---:|")
    print(f"| parameters | {n_params['mgoe']:,} | {n_params['mmoe']:,} | |")
    print(f"| model step, samples/s (median of rounds) | {med['mgoe']:,.0f} | {med['mmoe']:,.0f} | {med['mmoe'] / med['mgoe']:.2f}x |")
    print(f"| batch assembly alone, samples/s | {assemble_vectorised:,.0f} | {assemble_plain:,.0f} | {assemble_plain / assemble_vectorised:.2f}x |")
    print(f"| end to end incl. batch assembly, samples/s | {e2e['mgoe']:,.0f} | {e2e['mmoe']:,.0f} | {e2e['mmoe'] / e2e['mgoe']:.2f}x |")
    print()
    print("| pitfall | fast path | slow path | ratio |")
    print("|---|---:|---:|---:|")
    print(f"| batch assembly: vectorised vs one sample at a time, samples/s | {assemble_vectorised:,.0f} | {assemble_per_sample:,.0f} | {assemble_vectorised / assemble_per_sample:.1f}x |")
    print(f"| MGOE step: flush-to-zero on vs off, samples/s | {np.median(denormal[True]):,.0f} | {np.median(denormal[False]):,.0f} | {np.median(denormal[True]) / np.median(denormal[False]):.2f}x |")


if __name__ == "__main__":
    main()

"""The benchmark suite: MGOE, its ablations and the baselines on the same data and budget.

>>> from mgoe.bench import run_bench
>>> results = run_bench(["beibei", "synth:tiny"], ["mgoe", "mmoe"], [0, 1, 2], "bench",
...                     config={"num_threads": 1})                       # doctest: +SKIP

:func:`~mgoe.bench.runner.run_bench` prepares each dataset and builds its graphs once, trains
every (dataset, model, seed) run into its own run directory (skipping finished runs, resuming
interrupted ones) and writes the report (:mod:`mgoe.bench.report`): ``results.csv``,
``results.md`` and PNG plots. ``mgoe bench`` is the command line of the same.
"""

from __future__ import annotations

from mgoe.bench.report import write_report
from mgoe.bench.runner import ABLATIONS, VARIANTS, Variant, run_bench, variant

__all__ = ["ABLATIONS", "VARIANTS", "Variant", "run_bench", "variant", "write_report"]

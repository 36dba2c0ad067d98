"""mgoe: MGOE (Macro Graph of Experts) multi-task recommendation, from data import to serving.

The Python API mirrors the CLI::

    import mgoe
    mgoe.prepare("tmall", "../shared/data/mbgcn-tmall", "data/tmall")      # mgoe data prepare
    mgoe.build_graph("data/tmall", "graphs/tmall")                          # mgoe graph build
    metrics = mgoe.train("data/tmall", "graphs/tmall", output="runs/t1")    # mgoe train
    mgoe.evaluate("runs/t1", split="test")                                  # mgoe evaluate
    scores = mgoe.predict("runs/t1", pairs)                                 # mgoe predict

Submodules load lazily, so ``import mgoe`` stays cheap.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["build_graph", "evaluate", "predict", "prepare", "synth", "train"]


def prepare(source: str, input_path, output, **options):
    """Import ``source`` from ``input_path`` into a prepared dataset ``output`` (see
    ``mgoe data prepare``); ``options`` go to the importer and to
    :class:`mgoe.data.prepare.PrepareOptions` (split, fractions, negatives_per_positive, ...)."""
    from dataclasses import fields

    from mgoe.data.importers import get_importer
    from mgoe.data.prepare import PrepareOptions, prepare_dataset

    names = {f.name for f in fields(PrepareOptions)}
    prep = {k: v for k, v in options.items() if k in names}
    raw = get_importer(source)(input_path, **{k: v for k, v in options.items() if k not in names})
    return prepare_dataset(raw, output, PrepareOptions(**prep))


def synth(output, **config):
    """Generate synthetic data (see :class:`mgoe.data.synth.SynthConfig`) into ``output``."""
    from mgoe.data.synth import SynthConfig, generate

    return generate(SynthConfig(**config), output)


def build_graph(data, output, engine: str = "memory", force: bool = False, **config):
    """Build the macro graphs of a prepared dataset (see :class:`mgoe.graph.build.GraphConfig`)."""
    from mgoe.graph.build import GraphConfig
    from mgoe.graph.build import build_graph as _build

    return _build(data, output, GraphConfig(**config), engine=engine, force=force)


def evaluate(run_dir, split: str = "test", **kwargs):
    """Per-task AUC, GAUC and log-loss of a run's best weights (see ``mgoe evaluate``)."""
    from mgoe.train.api import evaluate as _evaluate

    return _evaluate(run_dir, split, **kwargs)


def predict(run_dir, pairs, **kwargs):
    """Scores of a DataFrame of (user_id, item_id) pairs (see ``mgoe predict``)."""
    from mgoe.train.api import predict as _predict

    return _predict(run_dir, pairs, **kwargs)


def __getattr__(name: str):
    if name == "train":  # the callable subpackage mgoe.train
        import importlib

        return importlib.import_module("mgoe.train")
    raise AttributeError(f"module 'mgoe' has no attribute {name!r}")

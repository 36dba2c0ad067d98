"""Run the benchmark: every (dataset, model variant, seed) with one training budget.

Layout of a bench directory ``BENCHDIR``::

    BENCHDIR/bench_config.json              the budget (one TrainConfig for every model), the
                                            search space ("no per-model tuning"), each variant's
                                            full model config, graph configs, datasets, seeds
    BENCHDIR/data/<dataset>/                prepared dataset (prepared once)
    BENCHDIR/graphs/<dataset>[-<variant>]/  its macro graphs (built once per graph variant)
    BENCHDIR/runs/<dataset>/<model>/seed<k>/  one run directory per run (mgoe.train.rundir),
                                            plus bench.json (wall seconds, resumed or not)
                                            or bench_error.txt (why the run failed)
    BENCHDIR/results.csv, results.md, plots/*.png   the report (mgoe.bench.report)
    BENCHDIR/locks/                         advisory flock files (one per run and per dataset)

A run whose ``metrics.json`` exists is skipped, so a killed bench restarts where it stopped; a
run directory left without ``metrics.json`` is resumed from its last checkpoint. Several bench
processes may share one ``BENCHDIR`` (e.g. one per core): a run another process is training is
skipped (its lock is held), and a dataset is prepared by one process while the others wait.

Datasets are given as specs (:func:`parse_dataset`):

* a registered source name (``tmall``, ``beibei``, ``movielens100k``, ...), prepared from the
  real files at their default place under the data root (``../shared/data`` beside the
  repository, or ``data_root``); ``NAME=PATH`` reads source ``NAME`` from ``PATH`` instead;
* ``synth:<preset>[:key=value,...]``: synthetic data (:func:`mgoe.data.synth.preset` with
  overrides of :class:`~mgoe.data.synth.SynthConfig` fields, e.g. ``synth:tiny:signal=0.2``);
* the path of an existing prepared dataset directory (used in place).

Models are *variants*: a model name plus model-config overrides plus a graph variant. Every
registered model is a variant of itself (its defaults); the MGOE ablations (:data:`ABLATIONS`)
are named variants, so an ablation is a run like any other.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import pandas as pd

from mgoe.errors import MgoeError
from mgoe.io import is_complete, write_json_atomic

SEARCH_SPACE = "no per-model tuning; defaults of each model's config; same budget"
"""What was tuned: nothing. Written into ``bench_config.json`` and the report."""

DEFAULT_INPUTS: dict[str, str] = {
    "tmall": "mbgcn-tmall",
    "beibei": "ghcf-multibehavior/Beibei",
    "movielens100k": "movielens-100k",
    "taobao-userbehavior": "taobao-userbehavior-sample",
    "kuairand": "kuairand-sample",
    "aliccp": "ali-ccp-sample",
    "aliexpress": "aliexpress-sample",
    "byterec": "byterec-icme2019-sample",
    "census-income": "census-income-kdd",
    "adult": "uci-adult",
}
"""Source name -> its input folder under the data root."""

GRAPH_VARIANTS: dict[str, dict[str, Any]] = {
    "unweighted": {"weighted": False},
    "no-loo": {"loo_assignment": False},
    "no-balanced-loo": {"balanced_leave_one_out": False},
}
"""Graph variant suffix -> :class:`~mgoe.graph.build.GraphConfig` overrides (ablations)."""

NON_BUDGET_FIELDS = frozenset({
    "model", "seed", "num_threads", "device", "log_every", "checkpoint_every_batches",
    "checkpoint_every_minutes", "eval_batch_size",
})
"""TrainConfig fields that may differ between invocations of one bench (they do not change
what is compared); every other field is the budget and must stay the same."""


# ----------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """A named model setting of the bench: model, model-config overrides, graph variant."""

    name: str
    model: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    """Model-config overrides (on top of the model's defaults)."""
    graph_variant: str | None = None
    """Key of :data:`GRAPH_VARIANTS`; None: the default graph."""
    description: str = ""

    @property
    def needs_graph(self) -> bool:
        """Whether the model reads macro graph features."""
        from mgoe.models import MACRO_MODELS

        return self.model in MACRO_MODELS


def _base_variants() -> dict[str, Variant]:
    from mgoe.models import MODELS

    return {name: Variant(name, name, {}, None, "the model's default config") for name in MODELS}


ABLATIONS: dict[str, Variant] = {
    v.name: v for v in (
        Variant("mgoe-no-mtmg", "mgoe", {"use_merged_graph": False}, None,
                "no merged graph (MTMG off): task-specific macro experts only"),
        Variant("mgoe-merged-only", "mgoe", {"task_specific_graphs": False}, None,
                "merged graph only: no task-specific graphs"),
        Variant("mgoe-plain-towers", "mgoe", {"cross_task_tower": False}, None,
                "plain towers: no cross-task attention in the Macro Prediction Tower"),
        Variant("mgoe-released-attention", "mgoe", {"released_macgnn_attention": True}, None,
                "MacGNN's released attention (constant query term, no masking)"),
        Variant("mgoe-unweighted-grouping", "mgoe", {}, "unweighted",
                "graph with unweighted grouping (k-means without preference weights)"),
        Variant("mgoe-no-loo-assignment", "mgoe", {}, "no-loo",
                "graph without leave-one-out macro assignment of training samples"),
        Variant("mgoe-no-balanced-loo", "mgoe", {}, "no-balanced-loo",
                "leave-one-out on positives only (negatives keep all their edges)"),
    )
}
"""The MGOE ablations (``--ablations``), each a named variant."""

VARIANTS: dict[str, Variant] = {**_base_variants(), **ABLATIONS}
"""Every variant name the bench knows: the registered models and the ablations."""


def variant(name: str) -> Variant:
    """The variant called ``name``; :class:`MgoeError` listing the known names otherwise."""
    try:
        return VARIANTS[name]
    except KeyError:
        raise MgoeError(
            f"unknown model {name!r} for the bench; known: {', '.join(VARIANTS)}"
        ) from None


def resolve_variants(models: Iterable[str], ablations: bool = False) -> list[Variant]:
    """The variants of ``models`` (names, in order, duplicates dropped), plus the ablations."""
    names = list(dict.fromkeys(models))
    if ablations:
        names += [n for n in ABLATIONS if n not in names]
    if not names:
        raise MgoeError("the bench needs at least one model")
    return [variant(n) for n in names]


# ----------------------------------------------------------------------------- datasets


@dataclass
class DatasetSpec:
    """A parsed dataset spec (see the module docstring)."""

    name: str
    kind: str
    """``source``, ``synth`` or ``prepared``."""
    spec: str
    """The spec as given."""
    source: str | None = None
    input: Path | None = None
    synth: dict[str, Any] | None = None
    """Preset name and overrides of a synthetic dataset (``{"preset": ..., **overrides}``)."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for ``bench_config.json``)."""
        return {"spec": self.spec, "kind": self.kind, "source": self.source,
                "input": None if self.input is None else str(self.input), "synth": self.synth}


def default_data_root() -> Path:
    """``../shared/data`` relative to the repository (or, installed, to the working directory)."""
    repo = Path(__file__).resolve().parents[3]
    candidates = [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def _parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def parse_dataset(spec: str, data_root: str | Path | None = None) -> DatasetSpec:
    """Parse one dataset spec: source name, ``NAME=PATH``, ``synth:...`` or a prepared directory."""
    from mgoe.data.importers import SOURCES

    text = spec.strip()
    if text.startswith("synth:") or text == "synth":
        return _parse_synth(text)
    if "=" in text:
        name, path = text.split("=", 1)
        if name not in SOURCES:
            raise MgoeError(
                f"dataset {spec!r}: {name!r} is not a source (NAME=PATH needs one of "
                f"{', '.join(sorted(SOURCES))})"
            )
        return DatasetSpec(name, "source", spec, source=name, input=Path(path).expanduser())
    if text in SOURCES:
        if text not in DEFAULT_INPUTS:
            raise MgoeError(f"dataset {text!r} has no default input folder; pass {text}=PATH")
        root = Path(data_root) if data_root is not None else default_data_root()
        return DatasetSpec(text, "source", spec, source=text, input=root / DEFAULT_INPUTS[text])
    path = Path(text).expanduser()
    if path.is_dir() and (path / "meta.json").is_file():
        return DatasetSpec(_safe_name(path.resolve().name), "prepared", spec, input=path.resolve())
    raise MgoeError(
        f"unknown dataset {spec!r}: expected a source ({', '.join(sorted(DEFAULT_INPUTS))}), "
        "NAME=PATH, synth:<preset>[:key=value,...] or a prepared dataset directory"
    )


def split_datasets(text: str) -> list[str]:
    """Split a comma-separated list of dataset specs, keeping ``synth:...`` settings together.

    ``"beibei,synth:tiny:signal=0.2,task_correlation=0.9,tmall"`` gives ``["beibei",
    "synth:tiny:signal=0.2,task_correlation=0.9", "tmall"]``: a ``key=value`` piece right after
    a synthetic spec belongs to it unless ``key`` is a source name (``NAME=PATH``).
    """
    from mgoe.data.importers import SOURCES

    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        key = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=.*", piece)
        if key and key[1] not in SOURCES and specs and specs[-1].startswith("synth:"):
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


def _parse_synth(spec: str) -> DatasetSpec:
    from mgoe.data.synth import PRESETS, SynthConfig

    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[1]:
        raise MgoeError(f"dataset {spec!r}: expected synth:<preset>[:key=value,...] "
                        f"(presets: {', '.join(PRESETS)})")
    preset_name = parts[1]
    if preset_name not in PRESETS:
        raise MgoeError(f"dataset {spec!r}: unknown synthetic preset {preset_name!r}; one of "
                        f"{', '.join(PRESETS)}")
    known = {f.name for f in fields(SynthConfig)}
    overrides: dict[str, Any] = {}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise MgoeError(f"dataset {spec!r}: expected key=value, got {item!r}")
            if key not in known or key == "name":
                raise MgoeError(f"dataset {spec!r}: unknown synthetic setting {key!r}; known: "
                                f"{', '.join(sorted(known - {'name'}))}")
            overrides[key] = _parse_value(value.strip())
    name = "synth-" + preset_name + "".join(f"-{k}{v}" for k, v in overrides.items())
    return DatasetSpec(_safe_name(name), "synth", spec, synth={"preset": preset_name, **overrides})


def prepare(ds: DatasetSpec, data_home: Path, log: Callable[[str], None],
            progress: bool = False) -> Path:
    """The prepared dataset directory of ``ds`` (prepared now unless it already is)."""
    if ds.kind == "prepared":
        assert ds.input is not None
        if not is_complete(ds.input):
            raise MgoeError(f"dataset {ds.input} is incomplete (no _COMPLETE marker)")
        return ds.input
    out = data_home / "data" / ds.name
    if is_complete(out):
        return out
    started = time.perf_counter()
    if ds.kind == "synth":
        from mgoe.data.synth import generate, preset

        assert ds.synth is not None
        settings = {k: v for k, v in ds.synth.items() if k != "preset"}
        try:
            config = preset(ds.synth["preset"], **settings)
            config.validate()
        except TypeError as exc:
            raise MgoeError(f"dataset {ds.spec!r}: {exc}") from None
        log(f"generating {ds.name} ({config.interactions:,} impressions) -> {out}")
        generate(config, out, progress=progress)
    else:
        from mgoe.data.importers import get_importer
        from mgoe.data.prepare import PrepareOptions, prepare_dataset

        assert ds.source is not None and ds.input is not None
        if not ds.input.exists():
            raise MgoeError(
                f"dataset {ds.name!r}: input {ds.input} does not exist; pass --data-root DIR or "
                f"{ds.name}=PATH"
            )
        log(f"preparing {ds.name} from {ds.input} -> {out}")
        raw = get_importer(ds.source)(ds.input)
        prepare_dataset(raw, out, PrepareOptions())
    log(f"  {ds.name} ready in {time.perf_counter() - started:.1f} s")
    return out


# ----------------------------------------------------------------------------- config


def base_config(config: Any = None, epochs: int | None = None) -> Any:
    """The bench's one :class:`~mgoe.train.config.TrainConfig` (``epochs`` overrides it).

    Its ``model_config`` may hold only settings every model shares (embedding size, dropout,
    ...), applied to all models alike; the ``model`` field is set per run.
    """
    from mgoe.models.base import ModelConfig
    from mgoe.train.config import resolve_config

    resolved = resolve_config(config).replace(epochs=epochs)
    shared = {f.name for f in fields(ModelConfig)}
    specific = sorted(set(resolved.model_config) - shared)
    if specific:
        raise MgoeError(
            f"bench config: model_config key(s) {', '.join(map(repr, specific))} are not shared by "
            f"every model; the bench compares each model's defaults (shared keys: "
            f"{', '.join(sorted(shared))})"
        )
    return resolved


def run_config(base: Any, v: Variant, seed: int) -> Any:
    """The TrainConfig of one run: the bench budget, the variant's model and overrides, ``seed``."""
    return base.replace(model=v.model, seed=seed,
                        model_config={**base.model_config, **dict(v.overrides)})


def _budget(train: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in train.items() if k not in NON_BUDGET_FIELDS}


def graph_config(v: Variant) -> Any:
    """The :class:`~mgoe.graph.build.GraphConfig` of a variant's graph (defaults + ablation)."""
    from mgoe.graph.build import GraphConfig

    return GraphConfig(**GRAPH_VARIANTS.get(v.graph_variant or "", {}))


def graph_dir(data_home: Path, dataset: str, v: Variant) -> Path:
    """``graphs/<dataset>`` or ``graphs/<dataset>-<graph variant>``."""
    suffix = f"-{v.graph_variant}" if v.graph_variant else ""
    return data_home / "graphs" / f"{dataset}{suffix}"


def _variant_record(v: Variant) -> dict[str, Any]:
    from mgoe.models import build_config

    full = asdict(build_config(v.model, dict(v.overrides)))
    return {"model": v.model, "overrides": dict(v.overrides), "model_config": full,
            "graph_variant": v.graph_variant,
            "graph_config": asdict(graph_config(v)) if v.needs_graph else None,
            "description": v.description}


def write_bench_config(output: Path, base: Any, variants: Sequence[Variant],
                       datasets: Sequence[DatasetSpec], seeds: Sequence[int],
                       data_home: Path) -> dict[str, Any]:
    """Write (or extend) ``bench_config.json``; refuse a budget that differs from the stored one."""
    import torch

    from mgoe import __version__

    path = output / "bench_config.json"
    old = json.loads(path.read_text()) if path.is_file() else None
    train = base.to_dict()
    train["model"] = "(per run: the variant's model)"
    train["seed"] = "(per run)"
    if old is not None:
        before, now = _budget(old["train"]), _budget(train)
        changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
        if changed:
            details = ", ".join(f"{k}: {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise MgoeError(
                f"{output} was benchmarked with another budget ({details}); every model must get "
                "the same budget, so use another --output (or the old settings)"
            )
        for ds in datasets:
            stored = old["datasets"].get(ds.name)
            if stored is not None and stored["spec"] != ds.spec:
                raise MgoeError(
                    f"{output}: dataset {ds.name!r} was benchmarked from {stored['spec']!r}, not "
                    f"{ds.spec!r}; use another --output"
                )
    record = {
        "search_space": SEARCH_SPACE,
        "train": train,
        "budget": {k: train[k] for k in ("epochs", "max_batches_per_epoch", "batch_size", "lr", "patience",
                                         "early_stopping_metric", "min_delta", "l2_embedding",
                                         "model_config")},
        "seeds": sorted(set((old or {}).get("seeds", [])) | set(seeds)),
        "variants": {**(old or {}).get("variants", {}),
                     **{v.name: _variant_record(v) for v in variants}},
        "datasets": {**(old or {}).get("datasets", {}),
                     **{ds.name: {**ds.describe(),
                                  "data_dir": str(_data_dir(ds, data_home))} for ds in datasets}},
        "data_home": str(data_home),
        "created": (old or {}).get("created") or time.strftime("%Y-%m-%dT%H:%M:%S"),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "versions": {"mgoe": __version__, "torch": torch.__version__,
                     "python": sys.version.split()[0]},
    }
    output.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return record


def _data_dir(ds: DatasetSpec, data_home: Path) -> Path:
    if ds.kind == "prepared":
        assert ds.input is not None
        return ds.input
    return data_home / "data" / ds.name


# ----------------------------------------------------------------------------- running


def run_dir(output: str | Path, dataset: str, model: str, seed: int) -> Path:
    """``BENCHDIR/runs/<dataset>/<model>/seed<k>``."""
    return Path(output) / "runs" / dataset / model / f"seed{seed}"


def run_bench(
    datasets: Sequence[str],
    models: Sequence[str],
    seeds: Sequence[int],
    output: str | Path,
    *,
    epochs: int | None = None,
    config: Any = None,
    ablations: bool = False,
    data_root: str | Path | None = None,
    shared_data: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every (dataset, model, seed) not yet finished in ``output`` and write the report.

    ``datasets``: dataset specs (module docstring); ``models``: variant names (models or
    ablations; ``ablations=True`` adds all MGOE ablations); ``config``: the one TrainConfig
    (instance, file, mapping or None) every model gets, ``epochs`` overriding its epochs;
    ``data_root``: folder of the raw source files (default ``../shared/data`` beside the
    repository); ``shared_data``: where prepared datasets and graphs live (``data/``,
    ``graphs/``), to share them between benches (default ``output``). Returns the rows of
    ``results.csv`` (all runs in ``output``, this call's and earlier ones); its
    ``attrs["trained"]`` and ``attrs["skipped"]`` list the run directories trained and skipped
    (finished before), ``attrs["unavailable"]`` those of macro models on data without a graph,
    ``attrs["failed"]`` those whose training raised an :class:`MgoeError` (the message is in
    the run directory's ``bench_error.txt``; the other runs go on, a rerun retries it).
    """
    from mgoe.bench.report import write_report
    from mgoe.train import api
    from mgoe.train.rundir import RunDir

    output = Path(output)
    data_home = Path(shared_data) if shared_data is not None else output
    seeds = list(dict.fromkeys(int(s) for s in seeds))
    if not seeds:
        raise MgoeError("the bench needs at least one seed")
    variants = resolve_variants(models, ablations)
    specs = [parse_dataset(d, data_root) for d in datasets]
    if not specs:
        raise MgoeError("the bench needs at least one dataset")
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise MgoeError(f"dataset name(s) given twice: {', '.join(duplicated)}")
    base = base_config(config, epochs)
    for v in variants:  # fail on a bad variant config before any work
        run_config(base, v, 0)
        _variant_record(v)
    write_bench_config(output, base, variants, specs, seeds, data_home)

    def log(line: str) -> None:
        if progress:
            print(line, flush=True)

    trained: list[str] = []
    skipped: list[str] = []
    unavailable: list[str] = []
    failed: list[str] = []
    busy: list[str] = []
    total = len(specs) * len(variants) * len(seeds)
    count = 0
    for ds in specs:
        with _lock(data_home / "locks" / f"prepare-{ds.name}.lock", wait=True):  # one preparer
            data = prepare(ds, data_home, log, progress)
            graphs = _build_graphs(ds, data, variants, data_home, log, progress)
        for seed in seeds:
            for v in variants:
                count += 1
                target = run_dir(output, ds.name, v.name, seed)
                label = f"[{count}/{total}] {ds.name} {v.name} seed {seed}"
                if (target / "metrics.json").is_file():
                    skipped.append(str(target))
                    log(f"{label}: done before, skipped")
                    continue
                if v.needs_graph and graphs.get(v.graph_variant) is None:
                    unavailable.append(str(target))
                    log(f"{label}: skipped, {ds.name} has no user-item graph for {v.model}")
                    continue
                run_lock = output / "locks" / f"{ds.name}--{v.name}--seed{seed}.lock"
                with _lock(run_lock, wait=False) as owned:
                    if not owned:
                        busy.append(str(target))
                        log(f"{label}: skipped, another bench process is training it")
                        continue
                    if (target / "metrics.json").is_file():  # finished while we waited
                        skipped.append(str(target))
                        continue
                    resume = RunDir(target).holds_run()
                    log(f"{label}: {'resuming' if resume else 'training'} -> {target}")
                    outcome = _train_one(api, data, graphs, v, base, seed, target, resume, progress)
                if isinstance(outcome, MgoeError):  # one failed run must not stop the others
                    exc = outcome
                    failed.append(str(target))
                    log(f"{label}: FAILED: {exc}")
                    continue
                metrics, wall = outcome
                write_json_atomic(target / "bench.json", {
                    "dataset": ds.name, "model": v.name, "base_model": v.model, "seed": seed,
                    "data_dir": str(data),
                    "graph_dir": str(graphs.get(v.graph_variant)) if v.needs_graph else None,
                    "wall_s": wall, "resumed": resume,
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                })
                trained.append(str(target))
                log(f"{label}: {wall:.1f} s; test "
                    + ", ".join(f"{t} auc {_fmt(m['auc'])}" for t, m in metrics["test"].items()))
    results = write_report(output)
    results.attrs["trained"] = trained
    results.attrs["skipped"] = skipped
    results.attrs["unavailable"] = unavailable
    results.attrs["failed"] = failed
    results.attrs["busy"] = busy
    log(f"report: {output / 'results.md'} ({len(trained)} runs trained, {len(skipped)} skipped)")
    return results


def _train_one(api: Any, data: Path, graphs: dict[str | None, Path], v: Variant, base: Any,
               seed: int, target: Path, resume: bool, progress: bool) -> Any:
    """Train (or resume) one run: ``(metrics, wall seconds)``, or the MgoeError it raised
    (also written to the run's ``bench_error.txt``)."""
    started = time.perf_counter()
    error_file = target / "bench_error.txt"
    try:
        metrics = api.train(data, graphs.get(v.graph_variant) if v.needs_graph else None,
                            output=target, config=run_config(base, v, seed), resume=resume,
                            progress=progress)
    except MgoeError as exc:
        target.mkdir(parents=True, exist_ok=True)
        error_file.write_text(f"{exc}\n")
        return exc
    error_file.unlink(missing_ok=True)
    return metrics, time.perf_counter() - started


@contextlib.contextmanager
def _lock(path: Path, wait: bool) -> Iterator[bool]:
    """An advisory ``flock`` on ``path`` (created), so that bench processes sharing an output
    never train the same run or prepare the same dataset at once. Yields whether it is held
    (always True with ``wait``). The kernel drops it when the process dies: no stale locks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build_graphs(ds: DatasetSpec, data: Path, variants: Sequence[Variant], data_home: Path,
                  log: Callable[[str], None], progress: bool) -> dict[str | None, Path]:
    """Graph variant -> graph directory, for the variants that need macro features."""
    from mgoe.data.schema import Dataset
    from mgoe.graph.build import build_graph

    needed = list(dict.fromkeys(v.graph_variant for v in variants if v.needs_graph))
    if not needed:
        return {}
    if not Dataset.open(data).meta.has_graph:
        log(f"{ds.name} has no user-item graph (tabular data): macro models are skipped")
        return {}
    out: dict[str | None, Path] = {}
    for gv in needed:
        v = next(v for v in variants if v.needs_graph and v.graph_variant == gv)
        target = graph_dir(data_home, ds.name, v)
        started = time.perf_counter()
        manifest = build_graph(data, target, graph_config(v), progress=progress)
        if not manifest.get("skipped"):
            log(f"graph {target} built in {time.perf_counter() - started:.1f} s")
        out[gv] = target
    return out


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"

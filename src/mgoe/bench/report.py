"""The bench report, from every finished run in a bench directory.

Writes::

    BENCHDIR/results.csv    one row per (dataset, model, seed, task): test auc, gauc, logloss,
                            valid auc, best_epoch, epochs_run, stop_reason,
                            train_samples_per_s, wall_s
    BENCHDIR/results.md     the budget, then one table per dataset (rows: models; per task
                            AUC, GAUC, log-loss as mean ± std over seeds, best mean AUC per task
                            in bold; samples/s and epochs), then "where MGOE loses"
    BENCHDIR/plots/<dataset>-test-auc.png     per-task test AUC per model, error bars = std
    BENCHDIR/plots/<dataset>-valid-auc.png    valid mean AUC per epoch per model (seed mean)

The std is the sample std over seeds (ddof 1; 0 with a single seed). Everything is computed
from the run directories (``metrics.json``, ``bench.json``), so the report can be rewritten at
any time (``mgoe bench --report-only``).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

COLUMNS = ["dataset", "model", "seed", "task", "auc", "gauc", "logloss", "valid_auc",
           "best_epoch", "epochs_run", "stop_reason", "train_samples_per_s", "wall_s"]
"""Columns of ``results.csv``."""

REFERENCE_MODEL = "mgoe"
"""The model "where MGOE loses" compares against."""


# ----------------------------------------------------------------------------- collecting


def _bench_config(output: Path) -> dict[str, Any]:
    path = output / "bench_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def collect_runs(output: str | Path) -> tuple[pd.DataFrame, dict[tuple[str, str], list[list[float | None]]]]:
    """Rows of ``results.csv`` and the valid mean-AUC curve of every run.

    The curves map (dataset, model) to one list per seed: valid AUC averaged over the tasks
    with a defined AUC, per epoch (None where no task has one).
    """
    output = Path(output)
    rows: list[dict[str, Any]] = []
    curves: dict[tuple[str, str], list[list[float | None]]] = {}
    for path in sorted((output / "runs").glob("*/*/seed*/metrics.json")):
        match = re.fullmatch(r"seed(\d+)", path.parent.name)
        if match is None:
            continue
        dataset, model, seed = path.parent.parent.parent.name, path.parent.parent.name, int(match[1])
        metrics = json.loads(path.read_text())
        extra_path = path.parent / "bench.json"
        extra = json.loads(extra_path.read_text()) if extra_path.is_file() else {}
        for task, m in metrics["test"].items():
            rows.append({
                "dataset": dataset, "model": model, "seed": seed, "task": task,
                "auc": m["auc"], "gauc": m["gauc"], "logloss": m["logloss"],
                "valid_auc": metrics["valid"].get(task, {}).get("auc"),
                "best_epoch": metrics.get("best_epoch"), "epochs_run": metrics.get("epochs_run"),
                "stop_reason": metrics.get("stop_reason"),
                "train_samples_per_s": metrics.get("train_samples_per_s"),
                "wall_s": extra.get("wall_s"),
            })
        curves.setdefault((dataset, model), []).append(
            [_mean_auc(entry.get("valid", {})) for entry in metrics.get("history", [])])
    frame = pd.DataFrame(rows, columns=COLUMNS)
    for col in ("auc", "gauc", "logloss", "valid_auc", "train_samples_per_s", "wall_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    return frame, curves


def _mean_auc(valid: dict[str, dict[str, float | None]]) -> float | None:
    values = [m["auc"] for m in valid.values() if m.get("auc") is not None]
    return float(np.mean(values)) if values else None


def _ordered(values: list[str], preferred: list[str]) -> list[str]:
    first = [v for v in preferred if v in values]
    return first + sorted(v for v in values if v not in first)


# ----------------------------------------------------------------------------- aggregation


def _std(values: pd.Series) -> float:
    clean = values.dropna()
    if len(clean) == 0:
        return math.nan
    return float(clean.std(ddof=1)) if len(clean) > 1 else 0.0


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per (dataset, model, task) of the test metrics and costs."""
    if frame.empty:
        return pd.DataFrame()
    grouped = frame.groupby(["dataset", "model", "task"], sort=False)
    out = grouped.agg(
        seeds=("seed", "nunique"),
        auc_mean=("auc", "mean"), auc_std=("auc", _std),
        gauc_mean=("gauc", "mean"), gauc_std=("gauc", _std),
        logloss_mean=("logloss", "mean"), logloss_std=("logloss", _std),
        samples_per_s=("train_samples_per_s", "mean"),
        epochs_run=("epochs_run", "mean"), best_epoch=("best_epoch", "mean"),
        wall_s=("wall_s", "mean"),
    )
    return out.reset_index()


def _cell(mean: float, std: float, bold: bool = False) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{mean:.4f} ± {0.0 if math.isnan(std) else std:.4f}"
    return f"**{text}**" if bold else text


def losses(summary: pd.DataFrame, reference: str = REFERENCE_MODEL) -> list[dict[str, Any]]:
    """(dataset, task, model, model AUC, reference AUC, gap) where a model's mean test AUC
    beats the reference model's; sorted by dataset, task, largest gap first."""
    out: list[dict[str, Any]] = []
    if summary.empty:
        return out
    for (dataset, task), group in summary.groupby(["dataset", "task"], sort=False):
        ref = group[group.model == reference]
        if ref.empty or math.isnan(ref.auc_mean.iloc[0]):
            continue
        ref_auc = float(ref.auc_mean.iloc[0])
        better = group[(group.model != reference) & (group.auc_mean > ref_auc)]
        for row in better.sort_values("auc_mean", ascending=False).itertuples():
            out.append({"dataset": dataset, "task": task, "model": row.model,
                        "auc": float(row.auc_mean), "mgoe_auc": ref_auc,
                        "gap": float(row.auc_mean) - ref_auc})
    return out


# ----------------------------------------------------------------------------- markdown


def _budget_lines(config: dict[str, Any]) -> list[str]:
    if not config:
        return ["(no bench_config.json: budget unknown)"]
    t = config["train"]
    shared = t.get("model_config") or {}
    lines = [
        f"Search space: {config.get('search_space')}.",
        "",
        f"Budget, the same for every model: at most {t['epochs']} epochs"
        + (f" of at most {t['max_batches_per_epoch']} batches (each epoch: the head of its own "
           "shuffle)" if t.get("max_batches_per_epoch") else "")
        + f", batch {t['batch_size']}, "
        f"Adam lr {t['lr']}, L2 on embeddings {t['l2_embedding']}, early stopping on valid "
        f"{t['early_stopping_metric']} (patience {t['patience']}, min_delta {t['min_delta']}); "
        + (f"shared model settings {json.dumps(shared)}; " if shared else "")
        + "full configs in `bench_config.json`.",
        "",
        "Test split; each cell is mean ± std over seeds (sample std; ± 0 with one seed). "
        "**Bold**: best mean AUC of the task. samples/s: training throughput; "
        "epochs: run (best).",
    ]
    ablations = {k: v for k, v in config.get("variants", {}).items()
                 if k.startswith(REFERENCE_MODEL + "-")}
    if ablations:
        lines += ["", "Ablations of MGOE:"]
        lines += [f"- `{k}`: {v.get('description', '')}" for k, v in ablations.items()]
    return lines


def markdown(frame: pd.DataFrame, summary: pd.DataFrame, config: dict[str, Any],
             plots: dict[str, list[str]] | None = None) -> str:
    """The text of ``results.md``."""
    lines = ["# Benchmark results", ""] + _budget_lines(config) + [""]
    if summary.empty:
        lines += ["No finished runs yet.", ""]
        lines += [f"- failed: `{run}`: {message}" for run, message in config.get("_failed", [])]
        return "\n".join(lines)
    datasets = _ordered(list(dict.fromkeys(summary.dataset)), list(config.get("datasets", {})))
    variant_order = list(config.get("variants", {}))
    for dataset in datasets:
        part = summary[summary.dataset == dataset]
        tasks = list(dict.fromkeys(frame[frame.dataset == dataset].task))
        models = _ordered(list(dict.fromkeys(part.model)), variant_order)
        best = {t: part[part.task == t].auc_mean.max() for t in tasks}
        header = ["model", "seeds"]
        for t in tasks:
            header += [f"{t} AUC", f"{t} GAUC", f"{t} log-loss"]
        header += ["samples/s", "epochs"]
        lines += [f"## {dataset}", "", "| " + " | ".join(header) + " |",
                  "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        for model in models:
            rows = part[part.model == model].set_index("task")
            cells = [f"`{model}`", str(int(rows.seeds.max()))]
            for t in tasks:
                if t not in rows.index:
                    cells += ["n/a"] * 3
                    continue
                r = rows.loc[t]
                top = not math.isnan(r.auc_mean) and r.auc_mean >= best[t]
                cells += [_cell(r.auc_mean, r.auc_std, top), _cell(r.gauc_mean, r.gauc_std),
                          _cell(r.logloss_mean, r.logloss_std)]
            first = rows.iloc[0]
            speed = first.samples_per_s
            cells.append("n/a" if math.isnan(speed) else f"{speed:,.0f}")
            cells.append(f"{first.epochs_run:.1f} ({first.best_epoch:.1f})")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for name in (plots or {}).get(dataset, []):
            lines.append(f"![{dataset}](plots/{name})")
        if (plots or {}).get(dataset):
            lines.append("")
    failed = (config or {}).get("_failed", [])
    if failed:
        lines += ["## Failed runs", "", "Runs without results; the message is the run's "
                  "`bench_error.txt` (rerunning the bench retries them):", ""]
        lines += [f"- `{run}`: {message}" for run, message in failed]
        lines.append("")
    lines += ["## Where MGOE loses", ""]
    lost = losses(summary)
    if REFERENCE_MODEL not in set(summary.model):
        lines.append(f"(`{REFERENCE_MODEL}` was not run.)")
    elif not lost:
        lines.append("Nowhere: no other model's mean test AUC beats MGOE's on any task.")
    else:
        lines.append("Tasks where another model's mean test AUC beats MGOE's (gap = its AUC − MGOE's):")
        lines.append("")
        for item in lost:
            lines.append(f"- {item['dataset']} / {item['task']}: `{item['model']}` "
                         f"{item['auc']:.4f} vs mgoe {item['mgoe_auc']:.4f} (+{item['gap']:.4f})")
    lines.append("")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- plots


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _style(k: int, model: str) -> dict[str, Any]:
    """Distinct colour per model (20 before they repeat); ablations of MGOE drawn hollow."""
    from matplotlib import colormaps

    colour = colormaps["tab20"](k % 20)
    hollow = model.startswith(REFERENCE_MODEL + "-")
    return {"color": colour, "markerfacecolor": "none" if hollow else colour}


def plot_test_auc(summary: pd.DataFrame, dataset: str, models: list[str], tasks: list[str],
                  path: Path) -> None:
    """Per-task test AUC per model with error bars (std over seeds)."""
    fig = _figure(max(5.0, 1.6 * len(tasks) + 2.5), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    part = summary[summary.dataset == dataset]
    width = 0.8 / max(len(models), 1)
    for k, model in enumerate(models):
        rows = part[part.model == model].set_index("task")
        xs, ys, es = [], [], []
        for j, task in enumerate(tasks):
            if task in rows.index and not math.isnan(rows.loc[task].auc_mean):
                xs.append(j - 0.4 + width * (k + 0.5))
                ys.append(rows.loc[task].auc_mean)
                es.append(0.0 if math.isnan(rows.loc[task].auc_std) else rows.loc[task].auc_std)
        ax.errorbar(xs, ys, yerr=es, fmt="o", capsize=3, label=model, **_style(k, model))
    ax.set_xticks(range(len(tasks)))
    ax.set_xticklabels(tasks)
    ax.set_ylabel("test AUC (mean ± std over seeds)")
    ax.set_title(f"{dataset}: test AUC per task")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, format="png")


def plot_valid_curves(curves: dict[tuple[str, str], list[list[float | None]]], dataset: str,
                      models: list[str], path: Path) -> None:
    """Valid mean AUC per epoch per model (mean over the seeds that ran that epoch)."""
    fig = _figure(6.5, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    for k, model in enumerate(models):
        runs = curves.get((dataset, model), [])
        length = max((len(r) for r in runs), default=0)
        xs, ys = [], []
        for epoch in range(length):
            values = [r[epoch] for r in runs if epoch < len(r) and r[epoch] is not None]
            if values:
                xs.append(epoch + 1)
                ys.append(float(np.mean(values)))
        if xs:
            ax.plot(xs, ys, marker="o", label=model, **_style(k, model))
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("valid AUC (mean over tasks and seeds)")
    ax.set_title(f"{dataset}: validation curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, format="png")


# ----------------------------------------------------------------------------- entry point


def write_report(output: str | Path) -> pd.DataFrame:
    """Write ``results.csv``, ``results.md`` and the plots of bench directory ``output``;
    returns the rows of ``results.csv``."""
    output = Path(output)
    config = _bench_config(output)
    frame, curves = collect_runs(output)
    datasets = _ordered(list(dict.fromkeys(frame.dataset)), list(config.get("datasets", {})))
    variant_order = list(config.get("variants", {}))
    models_all = _ordered(list(dict.fromkeys(frame.model)), variant_order)
    frame["dataset"] = pd.Categorical(frame.dataset, datasets, ordered=True)
    frame["model"] = pd.Categorical(frame.model, models_all, ordered=True)
    frame = frame.sort_values(["dataset", "model", "seed"], kind="stable")
    frame["dataset"] = frame.dataset.astype(str)
    frame["model"] = frame.model.astype(str)
    frame = frame.reset_index(drop=True)
    output.mkdir(parents=True, exist_ok=True)
    tmp = output / ".results.csv.tmp"
    frame.to_csv(tmp, index=False)
    tmp.replace(output / "results.csv")

    summary = summarise(frame)
    plots: dict[str, list[str]] = {}
    if not summary.empty:
        plot_dir = output / "plots"
        plot_dir.mkdir(exist_ok=True)
        for dataset in datasets:
            tasks = list(dict.fromkeys(frame[frame.dataset == dataset].task))
            models = _ordered(list(dict.fromkeys(summary[summary.dataset == dataset].model)),
                              variant_order)
            names = [f"{dataset}-test-auc.png", f"{dataset}-valid-auc.png"]
            plot_test_auc(summary, dataset, models, tasks, plot_dir / names[0])
            plot_valid_curves(curves, dataset, models, plot_dir / names[1])
            plots[dataset] = names
    failed = [(str(p.parent.relative_to(output)), p.read_text().strip())
              for p in sorted((output / "runs").glob("*/*/seed*/bench_error.txt"))
              if not (p.parent / "metrics.json").is_file()]
    text = markdown(frame, summary, {**config, "_failed": failed}, plots)
    tmp = output / ".results.md.tmp"
    tmp.write_text(text)
    tmp.replace(output / "results.md")
    return frame

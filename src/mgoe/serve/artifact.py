"""Serving artifacts: a self-contained, verifiable export of a training run (``mgoe export``).

An artifact holds everything :class:`~mgoe.serve.scorer.Scorer` needs, so it loads without the
training data, the graph directory or the run directory::

    ARTIFACT/
      manifest.json                 format + version, mgoe version, model name + config +
                                    ModelSpec, tasks, graphs, merged-score settings (beta,
                                    ranking), data and graph fingerprints, where it came from,
                                    and "files": {relative path: {"sha256", "size"}} of every
                                    other file below
      model/weights.safetensors     the run's best (or last) weights; safetensors, no pickle
      data/meta.json                the dataset's metadata (tasks, side-feature sizes, counts)
      data/users.parquet            user index, original user_id, side-feature codes
      data/items.parquet            item index, original item_id, side-feature codes
      data/vocab/*.parquet          side-feature vocabularies (code -> value)
      graph/manifest.json           the graph build's manifest (macro node counts, beta, ...)
      graph/user_macro.parquet      user -> macro node (cold = KU - 1)
      graph/item_macro.parquet      item -> macro node
      graph/edges.parquet           distinct history edges with their task masks (the current
                                    mask of a pair, needed by online updates)
      graph/features/<kind>.parquet first/second-order macro features of every graph
      _COMPLETE                     written last (the export is atomic)

``graph/`` is absent for a run trained without macro graphs (e.g. MMoE on ids only). The
leave-one-out re-assignment files of the graph directory (spectral coordinates, centroids)
are not copied: serving never applies leave-one-out.

:func:`open_artifact` checks the format version, the ``_COMPLETE`` marker and every listed
file's size and SHA-256, and raises :class:`~mgoe.errors.MgoeError` naming the first missing,
truncated or altered file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mgoe.errors import MgoeError
from mgoe.io import COMPLETE_MARKER, atomic_directory, is_complete, write_json_atomic

ARTIFACT_FORMAT = "mgoe-serving-artifact"
ARTIFACT_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model/weights.safetensors"
GRAPH_FILES = ("manifest.json", "user_macro.parquet", "item_macro.parquet", "edges.parquet")
FEATURE_KINDS = ("user_first", "user_second", "item_first", "item_second")
_CHUNK = 1 << 20


@dataclass
class Artifact:
    """A verified artifact directory: its root and parsed manifest."""

    root: Path
    manifest: dict[str, Any]

    def path(self, relative: str) -> Path:
        """Absolute path of a file listed in the manifest."""
        return self.root / relative

    @property
    def has_graph(self) -> bool:
        return bool(self.manifest.get("graph"))

    @property
    def tasks(self) -> list[str]:
        return list(self.manifest["tasks"])


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _copy_hashed(src: Path, dst: Path) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` (fsynced), hashing on the way; returns {"sha256", "size"}."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    size = 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return {"sha256": h.hexdigest(), "size": size}


def _graph_fingerprint(graph_manifest_path: Path) -> str:
    return hashlib.sha256(graph_manifest_path.read_bytes()).hexdigest()[:16]


def export_run(run_dir: str | Path, output: str | Path, weights: str = "best") -> dict[str, Any]:
    """Export training run ``run_dir`` to the artifact directory ``output`` (atomically).

    ``weights`` is ``"best"`` (the early-stopping choice, default) or ``"last"``. The run must
    have been trained on a prepared dataset directory (and graph directory for macro models)
    that still exists and still fits the run's model spec. Returns the artifact's manifest.
    """
    from mgoe import __version__
    from mgoe.data.schema import Dataset
    from mgoe.graph.build import data_fingerprint, load_manifest
    from mgoe.models import build_model
    from mgoe.models.spec import ModelSpec
    from mgoe.train.checkpoint import load_weights
    from mgoe.train.rundir import RunDir

    run = RunDir(run_dir)
    stored = run.read_config()
    if weights not in ("best", "last"):
        raise MgoeError(f"weights must be 'best' or 'last', got {weights!r}")
    weights_path = run.best if weights == "best" else run.last
    if not weights_path.is_file():
        raise MgoeError(f"{run.root} has no {weights_path.relative_to(run.root)} (no epoch finished yet)")
    source = stored["source"]
    if source.get("kind", "dataset") != "dataset" or source.get("data_dir") is None:
        raise MgoeError(
            f"{run.root} was trained on an in-memory or tensor source; export needs a run trained "
            "on a prepared dataset directory (mgoe data prepare / synth)"
        )
    spec = ModelSpec(**stored["spec"])
    ds = Dataset.open(source["data_dir"])
    meta = ds.meta
    if (meta.num_users + 1, meta.num_items + 1, list(meta.tasks)) != (spec.num_users, spec.num_items, spec.tasks):
        raise MgoeError(
            f"the dataset {ds.root} no longer fits the run {run.root}: it has {meta.num_users} users, "
            f"{meta.num_items} items, tasks {meta.tasks}; the model was trained for "
            f"{spec.num_users - 1}, {spec.num_items - 1}, {spec.tasks}"
        )
    graph_dir = Path(source["graph_dir"]) if source.get("graph_dir") else None
    graph_manifest = None
    if graph_dir is not None:
        graph_manifest = load_manifest(graph_dir)
        fits = (
            graph_manifest["num_users"] == meta.num_users
            and graph_manifest["num_items"] == meta.num_items
            and graph_manifest["num_user_macro"] == spec.num_user_macro
            and graph_manifest["num_item_macro"] == spec.num_item_macro
            and list(graph_manifest["graphs"]) == list(spec.graphs)
        )
        if not fits:
            raise MgoeError(
                f"the graph {graph_dir} no longer fits the run {run.root} (macro nodes, graphs or "
                "sizes differ from the model spec); export the run it was trained with"
            )
    elif spec.has_macro:
        raise MgoeError(f"{run.root}: the model spec has macro graphs but the run records no graph directory")

    # The weights must load into the recorded model before anything is written.
    model = build_model(stored["model"]["name"], spec, stored["model"]["config"])
    load_weights(weights_path, model)

    copies: list[tuple[Path, str]] = [
        (weights_path, WEIGHTS),
        (ds.root / "meta.json", "data/meta.json"),
        (ds.root / "users.parquet", "data/users.parquet"),
        (ds.root / "items.parquet", "data/items.parquet"),
    ]
    vocab = ds.root / "vocab"
    if vocab.is_dir():
        copies += [(p, f"data/vocab/{p.name}") for p in sorted(vocab.glob("*.parquet"))]
    if graph_dir is not None:
        copies += [(graph_dir / name, f"graph/{name}") for name in GRAPH_FILES]
        copies += [(graph_dir / "features" / f"{k}.parquet", f"graph/features/{k}.parquet") for k in FEATURE_KINDS]
    for src, _ in copies:
        if not src.is_file():
            raise MgoeError(f"cannot export {run.root}: {src} is missing")

    graph_info = None
    if graph_manifest is not None:
        graph_config = graph_manifest.get("config", {})
        graph_info = {
            "graphs": list(graph_manifest["graphs"]),
            "num_users": graph_manifest["num_users"],
            "num_items": graph_manifest["num_items"],
            "num_user_macro": graph_manifest["num_user_macro"],
            "num_item_macro": graph_manifest["num_item_macro"],
            "beta": graph_config.get("beta", 0.5),
            "ranking": graph_config.get("ranking"),
            "history_edges": graph_manifest.get("history_edges"),
            "source_dir": str(graph_dir.resolve()),
        }
    manifest: dict[str, Any] = {
        "format": ARTIFACT_FORMAT,
        "format_version": ARTIFACT_FORMAT_VERSION,
        "mgoe_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "run_dir": str(run.root.resolve()),
        "weights": weights,
        "model": {"name": stored["model"]["name"], "config": stored["model"]["config"]},
        "spec": asdict(spec),
        "tasks": list(spec.tasks),
        "dataset": {
            "name": meta.name,
            "num_users": meta.num_users,
            "num_items": meta.num_items,
            "user_features": list(meta.user_features),
            "item_features": list(meta.item_features),
            "context_features": list(meta.context_features),
            "source_dir": str(ds.root.resolve()),
        },
        "data_fingerprint": data_fingerprint(ds),
        "graph_fingerprint": _graph_fingerprint(graph_dir / "manifest.json") if graph_dir else None,
        "graph": graph_info,
        "files": {},
    }
    output = Path(output)
    with atomic_directory(output) as tmp:
        for src, rel in copies:
            manifest["files"][rel] = _copy_hashed(src, tmp / rel)
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest


def open_artifact(path: str | Path, verify: bool = True) -> Artifact:
    """Open and validate an artifact directory.

    Checks that it is complete (``_COMPLETE``), that ``manifest.json`` is an artifact manifest
    of a format this mgoe reads, and (with ``verify``) that every listed file exists with the
    recorded size and SHA-256. Raises :class:`MgoeError` naming the offending file.
    """
    root = Path(path)
    if not root.is_dir():
        raise MgoeError(f"{root}: no such artifact directory")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise MgoeError(f"{root}: not a serving artifact (no {MANIFEST}; create one with mgoe export)")
    if not is_complete(root):
        raise MgoeError(f"{root}: incomplete artifact (no {COMPLETE_MARKER} marker; export it again)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MgoeError(f"{manifest_path}: damaged manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise MgoeError(f"{manifest_path}: not a serving artifact manifest")
    if manifest.get("format_version") != ARTIFACT_FORMAT_VERSION:
        raise MgoeError(
            f"{manifest_path}: artifact format version {manifest.get('format_version')}, this mgoe "
            f"reads version {ARTIFACT_FORMAT_VERSION}; export the run again"
        )
    files = manifest.get("files")
    required = {"model", "spec", "tasks", "dataset"}
    if not isinstance(files, dict) or not required <= set(manifest):
        raise MgoeError(f"{manifest_path}: manifest lacks {sorted(required - set(manifest)) or ['files']}")
    needed = [WEIGHTS, "data/meta.json", "data/users.parquet", "data/items.parquet"]
    if manifest.get("graph"):
        needed += [f"graph/{n}" for n in GRAPH_FILES] + [f"graph/features/{k}.parquet" for k in FEATURE_KINDS]
    for rel in needed:
        if rel not in files:
            raise MgoeError(f"{root}: the manifest does not list {rel}")
    for rel, info in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise MgoeError(f"{manifest_path}: file entry {rel!r} points outside the artifact")
        file = root / rel
        if not file.is_file():
            raise MgoeError(f"{root}: file {rel} is missing")
        size = file.stat().st_size
        if size != info["size"]:
            raise MgoeError(f"{root}: file {rel} is damaged (size {size}, manifest says {info['size']})")
        if verify and sha256_file(file) != info["sha256"]:
            raise MgoeError(f"{root}: file {rel} is damaged (SHA-256 differs from the manifest)")
    return Artifact(root, manifest)

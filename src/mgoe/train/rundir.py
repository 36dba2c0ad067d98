"""The run directory: everything one training run produced, FuxiCTR-style (docs/STYLE.md)::

    RUN/
      config.json                  TrainConfig, model name + full model config, ModelSpec,
                                   the data source (kind, data_dir, graph_dir), versions
      log.txt                      timestamped progress lines (appended on resume)
      metrics.json                 valid/test metrics of the best epoch, history (written last)
      checkpoints/last.safetensors model + optimiser + RNG + trainer state (one atomic file)
      checkpoints/best.safetensors weights of the best epoch by the valid early-stopping metric

Any number in a report can be traced to the run directory (and so the command) that made it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from mgoe.errors import MgoeError


class RunDir:
    """Paths of a run directory (nothing is created until asked)."""

    def __init__(self, root: str | Path | RunDir) -> None:
        self.root = Path(root)

    def __fspath__(self) -> str:
        return str(self.root)

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.safetensors"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.safetensors"

    def holds_run(self) -> bool:
        """True when a run (config, checkpoint or metrics) was started here."""
        return self.config.exists() or self.last.exists() or self.metrics.exists()

    def read_config(self) -> dict[str, Any]:
        """``config.json``; :class:`MgoeError` when this is not a run directory."""
        if not self.config.is_file():
            raise MgoeError(f"{self.root} is not a training run directory (no config.json)")
        return json.loads(self.config.read_text())

    def read_metrics(self) -> dict[str, Any]:
        if not self.metrics.is_file():
            raise MgoeError(f"{self.root} has no metrics.json (the run has not finished)")
        return json.loads(self.metrics.read_text())


class RunLog:
    """Appends timestamped lines to ``log.txt``; optionally echoes them to stderr."""

    def __init__(self, path: Path, echo: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO = open(path, "a", encoding="utf-8")  # closed in close()
        self.echo = echo

    def __call__(self, message: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}"
        self._fh.write(line + "\n")
        self._fh.flush()
        if self.echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stderr)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The durable event log of ``mgoe serve``: JSON lines, fsynced before a request is answered.

One line per accepted ``POST /events`` request::

    {"v": 1, "ts": 1733000000.123, "events": [{"user_id": "u1", "item_id": "i9",
                                                "labels": {"click": 1, "buy": 0}}, ...]}

A line is written with one ``write`` call, then flushed and ``os.fsync``-ed, before the events
are applied and the response is sent; a new log file's directory is fsynced too. After a crash
(``kill -9``, power loss) every acknowledged request is on disk. A request that was being
written when the process died can leave a torn last line without a newline: it was never
acknowledged, so :class:`EventLog` cuts it off when it opens the file (a damaged line anywhere
else is refused: that is not a crash artefact). Since events have OR semantics, replaying the
log on startup (or onto a reloaded artifact) is idempotent.

The same file feeds the batch refresh: ``mgoe data add-events DATA --events LOG``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from mgoe.errors import MgoeError
from mgoe.serve.scorer import Event

LOG_VERSION = 1


def _parse_line(line: bytes, path: Path, lineno: int, offset: int) -> tuple[float, list[Event]]:
    try:
        record = json.loads(line)
        if not isinstance(record, dict) or record.get("v") != LOG_VERSION:
            raise ValueError(f"not a version-{LOG_VERSION} event record")
        events = [
            Event(str(e["user_id"]), str(e["item_id"]), {str(k): int(v) for k, v in (e.get("labels") or {}).items()})
            for e in record["events"]
        ]
        return float(record.get("ts", 0.0)), events
    except (ValueError, KeyError, TypeError) as exc:
        where = f"line {lineno}" if offset == 0 else f"line {lineno} after byte {offset}"
        raise MgoeError(f"{path}, {where}: damaged event record ({exc})") from None


def read_events(path: str | Path, offset: int = 0, with_time: bool = False
                ) -> tuple[list[Any], int]:
    """Events of the complete lines from byte ``offset`` on; returns (events, next offset).

    With ``with_time`` the list holds ``(ts, Event)`` pairs. A last line without a newline
    (a torn write) is not read.
    """
    path = Path(path)
    if not path.is_file():
        return [], offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    out: list[Any] = []
    for n, line in enumerate(data[:end].splitlines(), start=1):
        if not line.strip():
            continue
        ts, events = _parse_line(line, path, n, offset)
        if with_time:
            out.extend((ts, e) for e in events)
        else:
            out.extend(events)
    return out, offset + end


class EventLog:
    """Append-only, fsynced JSON-lines log of accepted events (thread-safe appends)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        self._repair_tail()
        self._fh = open(self.path, "ab")
        if created:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            _fsync_dir(self.path.parent)
        self._lock = threading.Lock()

    def _repair_tail(self) -> None:
        """Cut off a torn last line (no trailing newline) left by a crash mid-write."""
        if not self.path.exists():
            return
        size = self.path.stat().st_size
        if size == 0:
            return
        with open(self.path, "rb+") as fh:
            # find the last newline, reading backwards in blocks
            pos, block, keep = size, 1 << 16, 0
            while pos > 0:
                start = max(0, pos - block)
                fh.seek(start)
                chunk = fh.read(pos - start)
                idx = chunk.rfind(b"\n")
                if idx >= 0:
                    keep = start + idx + 1
                    break
                pos = start
            if keep != size:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def append(self, events: list[Event]) -> int:
        """Write one record durably (write, flush, fsync); returns the file size after it."""
        record = {"v": LOG_VERSION, "ts": round(time.time(), 3), "events": [e.to_json() for e in events]}
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self._lock:
            self._fh.write(line)
            self._fh.flush()
            os.fsync(self._fh.fileno())
            return self._fh.tell()

    def size(self) -> int:
        with self._lock:
            return self._fh.tell()

    def close(self) -> None:
        with self._lock:
            self._fh.close()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

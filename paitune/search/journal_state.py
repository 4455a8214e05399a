"""Scheduler state as a snapshot plus an append-only journal, so a change costs O(1), not O(state).

``STATE`` (a JSON snapshot, replaced atomically) holds the state as of its writing; ``STATE.log``
holds one JSON event per line since then. Loading reads the snapshot and replays the events; once
the journal is longer than the snapshot (and a floor), the state is written as a new snapshot and
the journal is emptied, so the cost of all writes stays linear in the number of events.

Events must be idempotent (setting a key to a value): a crash between writing a snapshot and
emptying the journal replays events the snapshot already holds. A half-written last line (a crash
or a full disk mid-append) is cut off when the state is loaded, before anything is appended after it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paitune.search.journal import append_whole, drop_partial_last_line

LOG_SUFFIX = ".log"
MIN_EVENTS_BEFORE_COMPACTING = 1000


class JournaledState:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.log_path = self.path.with_name(self.path.name + LOG_SUFFIX)
        self._events = 0  # in the journal now
        self._snapshot_size = 0  # records in the last snapshot

    def load(self) -> tuple[dict | None, list[Any]]:
        """The snapshot (None if there is none) and the journal's events, oldest first."""
        try:
            snapshot = json.loads(self.path.read_text())
        except FileNotFoundError:
            snapshot = None
        drop_partial_last_line(self.log_path)  # a crash or a full disk mid-append: never committed
        events = []
        try:
            lines = self.log_path.read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            events.append(json.loads(line))
        self._events = len(events)
        return snapshot, events

    def append(self, event: Any, snapshot: Callable[[], tuple[dict, int]]) -> None:
        """Journal ``event``; ``snapshot()`` gives (the whole state, its record count) when it is
        time to compact."""
        append_whole(self.log_path, (json.dumps(event, separators=(",", ":")) + "\n").encode())
        self._events += 1
        if self._events > max(MIN_EVENTS_BEFORE_COMPACTING, self._snapshot_size):
            self.compact(*snapshot())

    def compact(self, state: dict, size: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.path)
        with open(self.log_path, "w"):
            pass
        self._events = 0
        self._snapshot_size = size

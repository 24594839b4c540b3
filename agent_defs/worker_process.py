"""Which process a run worker is, recorded so that any process on the host can later tell whether it
still runs.

A pid alone does not name a process for long: once the worker has died, the kernel hands its pid to
the next process, and a check by pid would take that stranger for the worker (and a terminate would
signal it). The process's start time (clock ticks since boot, field 22 of /proc/<pid>/stat) together
with the pid names one process for as long as the host is up. Where /proc is missing the start time is
None and only the pid is checked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PID_TAG = "agentflow/worker_pid"
STARTED_TAG = "agentflow/worker_started"
# /proc/<pid>/stat fields after the command name, which is in parentheses and may hold spaces.
_STATE_FIELD = 0  # field 3
_STARTTIME_FIELD = 19  # field 22
_EXITED_STATES = ("Z", "X")  # a zombie has exited; only its exit status waits to be collected


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


@dataclass(frozen=True)
class WorkerProcess:
    pid: int
    started: str | None = None

    @classmethod
    def of(cls, pid: int) -> WorkerProcess:
        """The process now running under `pid` (its start time read while it is alive)."""
        fields = _stat_fields(pid)
        started = fields[_STARTTIME_FIELD] if fields and len(fields) > _STARTTIME_FIELD else None
        return cls(pid, started)

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> WorkerProcess | None:
        pid = tags.get(PID_TAG, "")
        if not pid.isdigit():
            return None
        return cls(int(pid), tags.get(STARTED_TAG) or None)

    def tags(self) -> dict[str, str]:
        tags = {PID_TAG: str(self.pid)}
        if self.started is not None:
            tags[STARTED_TAG] = self.started
        return tags

    def is_alive(self) -> bool:
        """Whether this very process still runs (not a later process that reuses its pid)."""
        fields = _stat_fields(self.pid)
        if fields is None:
            if Path("/proc/self/stat").exists():
                return False  # /proc works, so the pid has no process
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        if fields[_STATE_FIELD] in _EXITED_STATES:
            return False
        return self.started is None or (
            len(fields) > _STARTTIME_FIELD and fields[_STARTTIME_FIELD] == self.started
        )

    def describe(self) -> str:
        return f"run worker {self.pid}"

"""Scheduled drift checks: one run at a time, recorded in the history, judged by thresholds."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, ReconcileError
from .findings import KINDS
from .outputs import write_run
from .problems import did_you_mean
from .project import Project
from .run import Progress, RunResult, run_project

_OPS = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "=": lambda a, b: a == b,
    "==": lambda a, b: a == b,
}
_RULE = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|==|>|<|=)\s*(\d+)\s*$")
COUNTERS = (*KINDS, "total", "new", "reopened", "resolved", "stale")


@dataclass(frozen=True)
class Threshold:
    counter: str
    op: str
    limit: int

    def __str__(self) -> str:
        return f"{self.counter}{self.op}{self.limit}"


def parse_fail_on(text: str) -> list[Threshold]:
    """'state_mismatch>0,missing_in_target>=10' → thresholds; a clear error for anything else."""
    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        m = _RULE.match(part)
        if not m:
            raise ConfigError(
                f"--fail-on: cannot read {part!r}",
                hint="Write KIND>N, KIND>=N, KIND<N, KIND<=N or KIND=N, separated by commas.",
            )
        if m[1] not in COUNTERS:
            raise ConfigError(
                f"--fail-on: unknown counter {m[1]!r}{did_you_mean(m[1], COUNTERS)}",
                hint=f"Counters: {', '.join(COUNTERS)}.",
            )
        out.append(Threshold(m[1], m[2], int(m[3])))
    return out


def counters(doc: dict) -> dict[str, int]:
    f = doc["findings"]
    life = doc.get("lifecycle", {})
    values = {k: f["by_kind"].get(k, 0) for k in KINDS}
    values["total"] = f["total"]
    values.update({k: life.get(k, 0) for k in ("new", "reopened", "resolved")})
    values["stale"] = sum(s["total"] for s in doc.get("stale", {}).values())
    return values


def crossed(doc: dict, thresholds: list[Threshold]) -> list[str]:
    """The thresholds a run crosses, as 'state_mismatch>0 (48)'."""
    values = counters(doc)
    return [
        f"{t} ({values[t.counter]})" for t in thresholds if _OPS[t.op](values[t.counter], t.limit)
    ]


@contextlib.contextmanager
def run_lock(proj: Project) -> Iterator[None]:
    """At most one run per project at a time: a second scheduled run fails fast instead of
    overlapping the first."""
    proj.output_dir.mkdir(parents=True, exist_ok=True)
    path = proj.output_dir / ".reconcile.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReconcileError(
                f"another reconcile run is in progress in {proj.root} (lock {path})",
                hint="Let it finish; scheduled runs must not overlap.",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def check_and_record(
    proj: Project,
    *,
    lang: str | None = None,
    as_of: dt.date | None = None,
    stale_days: int = 7,
    progress: Progress = lambda _: None,
    started: dt.datetime | None = None,
) -> tuple[RunResult, Path, dict]:
    """One whole run: compare, follow every finding's lifecycle, write the run folder, record it."""
    with run_lock(proj):
        result = run_project(
            proj, as_of=as_of, progress=progress, stale_days=stale_days, started=started
        )
        history = proj.history()
        try:
            states, result.lifecycle = history.lifecycle(result.findings)
            folder, doc = write_run(result, proj, lang or proj.config.language)
            history.record_run(doc, result.findings, states)
        finally:
            history.close()
    return result, folder, doc

"""Scheduled drift checks: one run at a time, recorded in the history, judged by thresholds."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import findings as fz
from .errors import ConfigError, ReconcileError
from .findings import KINDS
from .outputs import publish, read_findings, write_run
from .problems import did_you_mean
from .project import Project
from .run import Progress, RunResult, accepted_differences, run_project
from .since import carry_forward

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
    if not out:
        raise ConfigError(
            "--fail-on names no threshold", hint="Write e.g. --fail-on 'state_mismatch>0'."
        )
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


def _since(proj: Project, history, as_of: dt.date, progress: Progress):
    """(the previous run's start, its summary, its findings) for a partial run, or Nones when the
    whole of both systems must be compared: no previous run, definitions or as-of date changed
    since (expiry of temporary codes), or the previous run's findings are gone."""
    previous = history.latest_run()
    if previous is None:
        progress("--since-last: no previous run recorded; comparing everything")
        return None, None, None
    summary = (
        json.loads(previous["summary"])
        if isinstance(previous["summary"], str)
        else previous["summary"]
    )
    now = proj.versions()
    if any(
        now[p]["sha256"] != summary["versions"][p]["sha256"]
        for p in ("source", "target", "mapping")
    ):
        progress(
            "--since-last: dictionaries or mapping changed since the last run; comparing everything"
        )
        return None, None, None
    if summary["as_of"] != as_of.isoformat():
        progress("--since-last: judged as of another date than the last run; comparing everything")
        return None, None, None
    folder = proj.output_dir / previous["run_id"]
    try:
        findings = read_findings(folder)
    except (OSError, ValueError):
        progress(
            f"--since-last: the findings of run {previous['run_id']} are gone; comparing everything"
        )
        return None, None, None
    return dt.datetime.fromisoformat(summary["started"]), summary, findings


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
    since_last: bool = False,
    partitions: int = 1,
) -> tuple[RunResult, Path, dict]:
    """One whole run: compare, follow every finding's lifecycle, write the run folder, record it."""
    with run_lock(proj):
        history = proj.history()
        try:
            day = as_of or proj.config.as_of or dt.date.today()
            since, previous, before = (
                _since(proj, history, day, progress) if since_last else (None,) * 3
            )
            result = run_project(
                proj,
                as_of=as_of,
                progress=progress,
                stale_days=stale_days,
                started=started,
                since=since,
                partitions=partitions,
            )
            if since is not None:
                carried = carry_forward(before, result.changed)
                result.findings = fz.finish(
                    [
                        result.findings.drop(columns="fingerprint"),
                        carried.drop(columns="fingerprint"),
                    ]
                )
                result.findings["status"] = "open"  # acceptances are judged anew, expiry included
                known = accepted_differences(proj, result.as_of)
                result.findings.loc[result.findings["fingerprint"].isin(list(known)), "status"] = (
                    "accepted"
                )
                result.since_last = {e: c.summary() for e, c in result.changed.items()} | {
                    "previous_run": previous["run_id"],
                    "carried": len(carried),
                }
            states, result.lifecycle = history.lifecycle(result.findings)
            folder, doc = write_run(
                result, proj, lang or proj.config.language, publish_latest=False
            )
            history.record_run(doc, result.findings, states, since_last=since is not None)
            publish(proj.output_dir, result.run_id)  # "latest" only once the history has the run
        finally:
            history.close()
    return result, folder, doc

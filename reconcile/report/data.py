"""Everything a report shows, gathered from a run folder and the run history (no rendering)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..errors import InputError
from ..findings import KINDS
from ..outputs import read_findings
from ..project import Project

SAMPLES = 5
TREND_RUNS = 12


def find_run(proj: Project, run_id: str | None) -> dict:
    """The summary of `run_id` (default: the latest run), with its folder."""
    out = proj.output_dir
    if run_id in (None, "latest"):
        latest = out / "latest"
        if not latest.is_file():
            raise InputError(f"no runs in {out} yet", hint="Run `reconcile run` first.")
        run_id = latest.read_text("utf-8").strip()
    folder = out / str(run_id)
    summary = folder / "summary.json"
    if not summary.is_file():
        known = (
            sorted(p.parent.name for p in out.glob("*/summary.json"))[-5:] if out.is_dir() else []
        )
        raise InputError(
            f"run {run_id!r} is not in {out}",
            hint=("Recent runs: " + ", ".join(p for p in known) + ".")
            if known
            else "Run `reconcile run` first.",
        )
    doc = json.loads(summary.read_text("utf-8"))
    doc["folder"] = str(folder)
    return doc


def _labels(proj: Project, side: str, entity: str, field: str, lang: str) -> dict[str, str]:
    dictionary = getattr(proj, side).dictionary
    fdef = dictionary.entities[entity].fields.get(field) if entity in dictionary.entities else None
    if fdef is None:
        return {}
    return {code: c.labels.get(lang) or c.labels.get("en") or "" for code, c in fdef.codes.items()}


def _counts(frame: pd.DataFrame, by: list[str]) -> list[dict]:
    if frame.empty:
        return []
    counts = frame.groupby(by, dropna=False).size().reset_index(name="count")
    counts = counts.sort_values(["count", *by], ascending=[False, *[True] * len(by)], kind="stable")
    return counts.astype(object).where(counts.notna(), None).to_dict("records")


def build(proj: Project, run_id: str | None, lang: str) -> dict:
    doc = find_run(proj, run_id)
    findings = read_findings(Path(doc["folder"]))
    # runs from before findings had a status: every finding was open
    status = findings["status"].fillna("open") if "status" in findings else "open"
    open_ = findings[status != "accepted"]
    data = {"run": doc, "lang": lang, "kinds": list(KINDS)}
    data["by_field"] = _counts(open_, ["entity", "field", "kind"])
    data["matrices"] = _matrices(proj, doc, lang)
    data["unmapped"] = _counts(
        open_[open_["kind"] == "unmapped_value"], ["entity", "field", "old_value"]
    )
    data["invalid"] = _counts(
        open_[open_["kind"] == "invalid_value"], ["entity", "field", "actual_value"]
    )
    lost = _counts(open_[open_["kind"] == "missing_tag"], ["entity", "field", "expected_value"])
    for row in lost:
        emap = proj.mapping.entities.get(row["entity"])
        labels = _labels(proj, "target", emap.target, row["field"], lang) if emap else {}
        row["label"] = labels.get(row["expected_value"], "")
    data["tags_lost"] = lost
    data["samples"] = {
        kind: _mask(proj, part.sort_values("fingerprint").head(SAMPLES))
        for kind, part in open_.groupby("kind")
    }
    data.update(_history(proj, doc["run_id"]))
    return data


def _mask(proj: Project, rows: pd.DataFrame) -> list[dict]:
    """Sample rows for a meeting: values of fields the dictionaries mark as PII are hidden."""
    out = rows.astype(object).where(rows.notna(), None).to_dict("records")
    for r in out:
        emap = proj.mapping.entities.get(r["entity"])
        if emap is None or not r["field"]:
            continue
        pair = next((f for f in emap.fields if f.target == r["field"]), None)
        target = proj.target.dictionary.entities[emap.target].fields.get(r["field"])
        source = (
            proj.source.dictionary.entities[emap.source].fields.get(pair.source)
            if pair and pair.source
            else None
        )
        if (target is not None and target.pii) or (source is not None and source.pii):
            for key in ("old_value", "expected_value", "actual_value", "suggestion", "derivation"):
                if r[key] is not None:
                    r[key] = "•••"
    return out


def _matrices(proj: Project, doc: dict, lang: str) -> list[dict]:
    """Old state × new state for every state field: counts, with the expected cells marked."""
    out = []
    for entity, fields in (doc.get("transitions") or {}).items():
        emap = proj.mapping.entities.get(entity)
        if emap is None:
            continue
        for field, cells in fields.items():
            pair = next((f for f in emap.fields if f.target == field), None)
            src_labels = _labels(proj, "source", emap.source, pair.source if pair else "", lang)
            tgt_labels = _labels(proj, "target", emap.target, field, lang)
            rows = sorted({c["old"] for c in cells}, key=_code_order(src_labels))
            # "?": the mapping expects nothing for that old code (unmapped or dropped)
            cols = sorted(
                {c["actual"] for c in cells} | ({c["expected"] for c in cells} - {"?"}),
                key=_code_order(tgt_labels),
            )
            expected = {c["old"]: (None if c["expected"] == "?" else c["expected"]) for c in cells}
            grid = {(c["old"], c["actual"]): c["count"] for c in cells}
            out.append(
                {
                    "entity": entity,
                    "field": field,
                    "source_field": pair.source if pair else "",
                    "rows": [
                        {"code": r, "label": src_labels.get(r, ""), "expected": expected.get(r)}
                        for r in rows
                    ],
                    "cols": [{"code": c, "label": tgt_labels.get(c, "")} for c in cols],
                    "cells": {f"{r}\x1f{c}": n for (r, c), n in grid.items()},
                    "unexpected": sum(
                        c["count"]
                        for c in cells
                        if c["expected"] != "?" and c["actual"] != c["expected"]
                    ),
                    "total": sum(c["count"] for c in cells),
                }
            )
    return out


def _code_order(labels: dict[str, str]):
    order = {code: i for i, code in enumerate(labels)}
    return lambda code: (order.get(code, len(order)), code)


def _history(proj: Project, run_id: str) -> dict:
    """New and resolved since the previous run, and the trend over recent runs."""
    if not proj.has_history():
        return {"previous": None, "new": [], "resolved": [], "trend": []}
    history = proj.history()
    try:
        this = history.run(run_id)
        previous = history.previous(run_id) if this else None
        mine = history.findings_of(run_id) if this else []
        before = history.findings_of(previous["run_id"]) if previous else []
        recent = [r for r in history.runs(200) if this is None or r["seq"] <= this["seq"]][
            :TREND_RUNS
        ]
    finally:
        history.close()
    now = {f["fingerprint"] for f in mine}
    new = [f for f in mine if f["lifecycle"] in ("new", "reopened")]
    resolved = [f for f in before if f["fingerprint"] not in now]
    return {
        "previous": previous["summary"] if previous else None,
        "new": _counts(
            pd.DataFrame(new, columns=["entity", "kind", "lifecycle"]),
            ["entity", "kind", "lifecycle"],
        ),
        "resolved": _counts(pd.DataFrame(resolved, columns=["entity", "kind"]), ["entity", "kind"]),
        "trend": [
            {
                "run_id": r["run_id"],
                "as_of": r["summary"]["as_of"],
                "started": r["summary"]["started"],
                "by_kind": r["summary"]["findings"]["by_kind"],
                "total": r["summary"]["findings"]["total"],
            }
            for r in reversed(recent)
        ],
    }

"""A run's folder: findings (CSV, and JSON or Parquet), the worksheet (XLSX, CSV), summary.json."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import worksheet
from .atomic import atomic_dir, atomic_path
from .extract.sql import redact
from .findings import COLUMNS
from .project import Project
from .run import RunResult

PARQUET_FROM = 100_000  # findings; above this JSON gets unwieldy and Parquet is written instead


def summary(
    result: RunResult, proj: Project, lang: str, outputs: dict[str, str] | None = None
) -> dict:
    versions = proj.versions()
    for role in ("source", "target"):
        system = getattr(proj, role)
        versions[role]["location"] = redact(system.url) if system.url else str(system.exports)
    return {
        "run_id": result.run_id,
        "started": result.started.isoformat(),
        "as_of": result.as_of.isoformat(),
        "project": proj.config.name,
        "language": lang,
        "versions": versions,
        "records": result.records,
        "findings": result.counts(),
        "lifecycle": result.lifecycle,
        "since_last": result.since_last,
        "seconds": result.seconds,
        "timings": result.timings,
        "transitions": result.transitions,
        "stale": result.stale,
        "outputs": outputs or {},
    }


def write_run(
    result: RunResult,
    proj: Project,
    lang: str,
    out_root: Path | None = None,
    publish_latest: bool = True,
) -> tuple[Path, dict]:
    """Write every output of `result` into OUT/<run_id>/ atomically; (folder, summary)."""
    out_root = Path(out_root or proj.output_dir)
    final = out_root / result.run_id
    names = {
        "findings_csv": "findings.csv",
        "findings": "findings.parquet" if len(result.findings) > PARQUET_FROM else "findings.json",
        "worksheet_xlsx": "worksheet.xlsx",
        "worksheet_csv": "worksheet.csv",
        "summary": "summary.json",
    }
    outputs = {k: str(final / v) for k, v in names.items()}
    doc = summary(result, proj, lang, outputs)
    with atomic_dir(final) as tmp:
        f = result.findings
        # findings.csv is for spreadsheets: neutralised like the worksheet. Tools and `apply`
        # read the exact values from findings.json or findings.parquet.
        safe = f.astype(object).map(lambda v: worksheet.neutralise(v) if isinstance(v, str) else v)
        safe.to_csv(tmp / names["findings_csv"], index=False, encoding="utf-8", lineterminator="\n")
        if names["findings"].endswith(".parquet"):
            f.to_parquet(tmp / names["findings"], index=False)
        else:
            records = f.astype(object).where(f.notna(), None).to_dict(orient="records")
            (tmp / names["findings"]).write_text(
                json.dumps(records, ensure_ascii=False, indent=1), "utf-8"
            )
        rows = worksheet.table(f, proj, result.run_id, lang)
        about = _about(doc, lang)
        worksheet.write_xlsx(rows, tmp / names["worksheet_xlsx"], lang, about)
        worksheet.write_csv(rows, tmp / names["worksheet_csv"])
        (tmp / names["summary"]).write_text(json.dumps(doc, ensure_ascii=False, indent=2), "utf-8")
    if publish_latest:
        publish(out_root, result.run_id)
    return final, doc


def publish(out_root: Path, run_id: str) -> None:
    """Point OUT/latest at a finished run."""
    with atomic_path(Path(out_root) / "latest") as tmp:
        tmp.write_text(run_id + "\n", "utf-8")


def _about(doc: dict, lang: str) -> list[tuple[str, str]]:
    v = doc["versions"]
    how = {
        "zh": "在“决定”列选择 approve(批准修正)/ reject(拒绝:接受该差异,在备注中说明原因,可填写接受至某日期)"
        "/ edit(修改后批准,并填写修正值);填写审核人。请勿修改灰色列:被修改的行会在应用时被拒绝。",
        "en": "Choose a decision: approve (apply the suggestion), reject (the difference is accepted; "
        "say why in comment, optionally until a date), or edit (apply the corrected value). Fill in "
        "reviewer. Do not change the grey columns: altered rows are rejected when the worksheet is "
        "applied.",
    }[lang]
    return [
        ("reconcile worksheet", doc["project"] or ""),
        ("run_id", doc["run_id"]),
        ("started", doc["started"]),
        ("as_of", doc["as_of"]),
        (
            "source",
            f"{v['source']['system']} v{v['source']['version']} ({v['source']['sha256'][:12]})",
        ),
        (
            "target",
            f"{v['target']['system']} v{v['target']['version']} ({v['target']['sha256'][:12]})",
        ),
        (
            "mapping",
            f"{v['mapping']['file']} v{v['mapping']['version']} ({v['mapping']['sha256'][:12]})",
        ),
        ("findings", str(doc["findings"]["total"])),
        ("how to review", how),
    ]


def read_findings(run_dir: Path) -> pd.DataFrame:
    """A run's findings with their exact values (from Parquet or JSON, never the neutralised CSV)."""
    parquet, js = run_dir / "findings.parquet", run_dir / "findings.json"
    if parquet.is_file():
        frame = pd.read_parquet(parquet)
    else:
        frame = pd.DataFrame(json.loads(js.read_text("utf-8")), columns=list(COLUMNS))
    return frame.astype("string")

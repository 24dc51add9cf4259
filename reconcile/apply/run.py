"""`reconcile apply`: validate a reviewed worksheet, plan, show the SQL, execute, audit."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..atomic import atomic_path
from ..errors import InputError
from ..extract import read_entity
from ..extract.sql import connect
from ..normalize import project
from ..project import Project
from ..review import Review, read_review
from ..run import fields_read, key_text
from .plan import Change, plan
from .proposals import propose
from .target import EntityWriter, transaction, undo, write_engine


@dataclass
class ApplyResult:
    apply_id: str
    review: Review
    changes: list[Change] = field(default_factory=list)
    executed: bool = False
    folder: Path | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(Counter(c.status for c in self.changes))

    def to_dict(self) -> dict:
        return {
            "apply_id": self.apply_id,
            "run_id": self.review.run_id,
            "worksheet": str(self.review.worksheet),
            "worksheet_sha256": self.review.sha256,
            "executed": self.executed,
            "undecided_rows": self.review.undecided,
            "problems": [p.to_dict() for p in self.review.problems],
            "counts": self.counts(),
            "changes": [
                {
                    k: getattr(c, k)
                    for k in (
                        "seq",
                        "fingerprint",
                        "entity",
                        "action",
                        "target_id",
                        "uid",
                        "field",
                        "before",
                        "after",
                        "reviewer",
                        "status",
                        "note",
                    )
                }
                | {"sql": c.sql}
                for c in self.changes
            ],
            "outputs": self.outputs,
        }


def apply_worksheet(
    proj: Project,
    worksheet: Path,
    *,
    execute: bool = False,
    skip_invalid: bool = False,
    reviewer: str | None = None,
    run_id: str | None = None,
    emit_upsert: Path | None = None,
) -> ApplyResult:
    review = read_review(proj, worksheet, run_id=run_id, reviewer=reviewer)
    now = dt.datetime.now(dt.UTC)
    result = ApplyResult(now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3), review)
    if review.problems and not skip_invalid:
        return result
    result.changes = plan(proj, review)
    result.folder = review.run_dir / "applies" / result.apply_id
    writes = [c for c in result.changes if c.action in ("set", "add_tag", "remove_tag", "insert")]
    if emit_upsert is not None:
        from .upsert import emit

        result.outputs.update(emit(proj, writes, emit_upsert))
        for c in writes:
            c.status = "emitted"
        result.executed = True
    elif writes:
        if proj.target.url is None:
            raise InputError(
                "the new CRM is read from export files, so corrections cannot be written to it",
                hint="Use --emit-upsert DIR to write import files instead.",
            )
        _write(proj, result, writes, execute)
        result.executed = execute
    else:
        result.executed = execute  # only decisions to remember, no writes to the CRM
    if not result.outputs.get("patch_sql"):
        _patch_files(result)
    if result.executed:
        try:
            _remember(proj, result, now)
        except Exception as exc:  # the CRM is already changed: a lost audit must not hide that
            result.warnings.append(
                f"the changes were applied, but recording them in the run history failed ({exc}); "
                f"the patch and undo files are in {result.folder}"
            )
    return result


def _write(proj: Project, result: ApplyResult, writes: list[Change], execute: bool) -> None:
    inserts = projections(proj, [c for c in writes if c.action == "insert"])
    engine = write_engine(proj.target.url) if execute else connect(proj.target.url)
    try:
        with transaction(engine, write=execute) as conn:
            writers: dict[str, EntityWriter] = {}
            for c in writes:
                emap = proj.mapping.entities[c.entity]
                if c.entity not in writers:
                    writers[c.entity] = EntityWriter(
                        conn, proj.target.dictionary.entities[emap.target], execute
                    )
                w = writers[c.entity]
                if c.action == "set":
                    w.set(c)
                elif c.action == "insert":
                    if c.uid not in inserts:
                        c.status, c.note = "conflict", "the old record is gone or out of scope now"
                        continue
                    values, tags = inserts[c.uid]
                    defaults = {
                        k: insert_default(v, proj, emap, k) for k, v in emap.on_insert.items()
                    }
                    w.insert(c, {**defaults, **values}, tags, (emap.link.uid.target, c.uid))
                else:
                    w.tag(c)
            if execute:
                # The undo patch is on disk before the commit: a crash after it still has a way back.
                result.folder.mkdir(parents=True, exist_ok=True)
                steps = [s for c in writes for s in c.undo]
                path = result.folder / "undo.json"
                with atomic_path(path) as tmp:
                    tmp.write_text(
                        json.dumps(
                            {
                                "apply_id": result.apply_id,
                                "run_id": result.review.run_id,
                                "target": proj.target.name,
                                "steps": steps,
                            },
                            ensure_ascii=False,
                            indent=1,
                        ),
                        "utf-8",
                    )
                result.outputs["undo"] = str(path)
                result.outputs["undo_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
            _patch_files(result)  # what is about to be committed, on disk first
    finally:
        engine.dispose()


def insert_default(value, proj: Project, emap, name: str):
    if value != "now":
        return value
    now = dt.datetime.now(dt.UTC)
    kind = proj.target.dictionary.entities[emap.target].fields[name].kind.name
    return now.date() if kind == "date" else now


def projections(proj: Project, inserts: list[Change]) -> dict[str, tuple[dict, dict]]:
    """For records to insert: the mapped projection of their old record, by UID."""
    if not inserts:
        return {}
    out: dict[str, tuple[dict, dict]] = {}
    for name in {c.entity for c in inserts}:
        emap = proj.mapping.entities[name]
        if emap.link.uid is None:
            for c in inserts:
                if c.entity == name:
                    c.status, c.note = "manual", "inserting needs a UID link (link: uid)"
            continue
        s_ent = proj.source.dictionary.entities[emap.source]
        t_ent = proj.target.dictionary.entities[emap.target]
        src = read_entity(proj.source, s_ent, fields_read(emap, s_ent, "source"), emap.scope.source)
        keys = key_text(src.frame[emap.link.uid.source])
        wanted = {c.uid for c in inserts if c.entity == name}
        rows = keys[keys.isin(wanted)]
        proj_ = project(emap, src, s_ent, t_ent)
        for row, uid in rows.items():
            values = {}
            for exp in proj_.expectations:
                if bool(exp.compare.iloc[row]) and pd.notna(exp.expected.iloc[row]):
                    values[exp.target] = exp.expected.iloc[row]
            tags = {
                t: list(frame.loc[frame["row"] == row, "tag"]) for t, frame in proj_.tags.items()
            }
            out[uid] = (values, tags)
    return out


def _remember(proj: Project, result: ApplyResult, now: dt.datetime) -> None:
    history = proj.history()
    try:
        accepted = [
            {
                "fingerprint": c.fingerprint,
                "entity": c.entity,
                "kind": c.action,
                "decision": "accepted",
                "reason": c.comment,
                "reviewer": c.reviewer,
                "until": c.until,
                "run_id": result.review.run_id,
                "decided_at": now.replace(tzinfo=None),
            }
            for c in result.changes
            if c.action == "accept"
        ]
        history.accept(accepted)
        proposal = propose(
            proj.mapping_file, proj.mapping.version, result.changes, result.review.run_id
        )
        if proposal is not None:
            result.outputs["mapping_proposal"] = str(proposal)
        history.record_apply(
            {
                "apply_id": result.apply_id,
                "run_id": result.review.run_id,
                "worksheet": str(result.review.worksheet),
                "worksheet_sha256": result.review.sha256,
                "executed": True,
                "started": now.replace(tzinfo=None),
                "finished": dt.datetime.now(dt.UTC).replace(tzinfo=None),
                "counts": result.counts(),
                "undo_patch": result.outputs.get("undo"),
                "undo_sha256": result.outputs.get("undo_sha256"),
            },
            [
                {
                    "apply_id": result.apply_id,
                    "seq": c.seq,
                    "fingerprint": c.fingerprint,
                    "entity": c.entity,
                    "target_id": c.target_id,
                    "uid": c.uid,
                    "field": c.field,
                    "action": c.action,
                    "status": c.status,
                    "before": None if c.before is None else str(c.before),
                    "after": None if c.after is None else str(c.after),
                    "reviewer": c.reviewer,
                    "at": now.replace(tzinfo=None),
                }
                for c in result.changes
            ],
        )
    finally:
        history.close()


def _patch_files(result: ApplyResult) -> None:
    if result.folder is None:
        return
    result.folder.mkdir(parents=True, exist_ok=True)
    lines = [
        f"-- reconcile apply {result.apply_id} for run {result.review.run_id}",
        f"-- worksheet {result.review.worksheet} (sha256 {result.review.sha256})",
        "-- each statement runs with the bound parameters below it, in one transaction",
        "",
    ]
    for c in result.changes:
        for sql, params in c.sql:
            lines += [
                f"-- #{c.seq} {c.action} {c.entity} {c.target_id or c.uid} {c.field or ''} "
                f"({c.status}; reviewer {c.reviewer})",
                sql.strip() + ";",
                f"-- params: {json.dumps(params, ensure_ascii=False)}",
                "",
            ]
    sql_path, json_path = result.folder / "patch.sql", result.folder / "patch.json"
    with atomic_path(sql_path) as tmp:
        tmp.write_text("\n".join(lines), "utf-8")
    with atomic_path(json_path) as tmp:
        tmp.write_text(
            json.dumps(result.to_dict(), ensure_ascii=False, indent=1, default=str), "utf-8"
        )
    result.outputs.update({"patch_sql": str(sql_path), "patch_json": str(json_path)})


def _recorded_undo(proj: Project, apply_id: str | None, sha: str) -> bool:
    import sqlalchemy as sa

    from ..history import applies

    history = proj.history()
    try:
        with history.engine.connect() as conn:
            row = conn.execute(
                sa.select(applies.c.undo_sha256).where(applies.c.apply_id == (apply_id or ""))
            ).first()
    finally:
        history.close()
    return row is not None and row[0] == sha


def undo_patch(proj: Project, path: Path, execute: bool) -> list[dict]:
    """Run an undo patch written by an executed apply."""
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
        steps = doc["steps"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"{path} is not an undo patch written by reconcile apply: {exc}") from None
    if doc.get("target") != proj.target.name:
        raise InputError(
            f"{path} undoes changes to {doc.get('target')!r}, not to {proj.target.name!r}"
        )
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if not proj.has_history() or not _recorded_undo(proj, doc.get("apply_id"), sha):
        raise InputError(
            f"{path} is not an undo patch this project's history recorded (altered, or from elsewhere)",
            hint="Only the undo.json that an executed apply wrote, unchanged, can be run.",
        )
    engine = write_engine(proj.target.url) if execute else connect(proj.target.url)
    try:
        with transaction(engine, write=execute) as conn:
            try:
                return undo(conn, steps, execute)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(
                    f"{path}: a damaged undo step ({type(exc).__name__}: {exc})"
                ) from None
    finally:
        engine.dispose()

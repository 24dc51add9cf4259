"""From reviewed decisions to a plan: what each approved row changes, and what it only records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..project import Project
from ..review import Review

AUTOMATIC = {
    "state_mismatch": "set",
    "value_mismatch": "set",
    "missing_tag": "add_tag",
    "unexpected_tag": "remove_tag",
    "missing_in_target": "insert",
}


@dataclass
class Change:
    """One step of an apply. `before`/`after` are shown as the run shows values (codes, ISO)."""

    seq: int
    fingerprint: str
    entity: str
    action: str  # set, add_tag, remove_tag, insert | manual, accept, propose
    target_id: str | None
    uid: str | None
    field: str | None
    before: Any
    after: Any
    reviewer: str
    comment: str | None = None
    until: Any = None
    status: str = "planned"  # → applied, already, conflict, manual, accepted, proposed
    note: str = ""
    sql: list[tuple[str, list]] = field(default_factory=list)
    undo: list[dict] = field(default_factory=list)


def plan(proj: Project, review: Review) -> list[Change]:
    changes: list[Change] = []
    for d in sorted(review.decisions, key=lambda d: (d.sheet, d.row)):
        f = d.finding
        kind = f["kind"]
        base = dict(
            seq=len(changes) + 1,
            fingerprint=f["fingerprint"],
            entity=f["entity"],
            target_id=f["target_id"],
            uid=f["uid"],
            field=f["field"],
            reviewer=d.reviewer,
            comment=d.comment,
        )
        if d.decision == "reject":
            changes.append(
                Change(
                    action="accept",
                    before=f["actual_value"],
                    after=None,
                    until=d.accept_until,
                    status="accepted",
                    note="accepted difference",
                    **base,
                )
            )
            continue
        if kind == "unmapped_value":
            changes.append(
                Change(
                    action="propose",
                    before=f["old_value"],
                    after=d.value,
                    status="proposed",
                    note="mapping proposal",
                    **base,
                )
            )
            continue
        if kind == "invalid_value":
            tags = _is_tags(proj, f)
            if tags:
                changes.append(
                    Change(
                        action="remove_tag",
                        before=f["actual_value"],
                        after=f["actual_value"],
                        **base,
                    )
                )
                if d.value is not None:  # edit: replace the invalid tag with the reviewer's
                    more = {**base, "seq": len(changes) + 1}
                    changes.append(Change(action="add_tag", before=None, after=d.value, **more))
            else:
                changes.append(
                    Change(action="set", before=f["actual_value"], after=d.value, **base)
                )
            continue
        action = AUTOMATIC.get(kind)
        if action is None:
            changes.append(
                Change(
                    action="manual",
                    before=f["actual_value"],
                    after=d.value,
                    status="manual",
                    note=_manual_note(kind),
                    **base,
                )
            )
            continue
        if action == "set":
            after = d.value if d.value is not None else f["expected_value"]
            changes.append(Change(action="set", before=f["actual_value"], after=after, **base))
        elif action == "add_tag":
            changes.append(
                Change(action="add_tag", before=None, after=d.value or f["expected_value"], **base)
            )
        elif action == "remove_tag":
            changes.append(
                Change(
                    action="remove_tag", before=f["actual_value"], after=f["actual_value"], **base
                )
            )
        else:
            changes.append(Change(action="insert", before=None, after=f["uid"], **base))
    return changes


def _is_tags(proj: Project, f: dict) -> bool:
    emap = proj.mapping.entities[f["entity"]]
    fdef = proj.target.dictionary.entities[emap.target].fields.get(f["field"] or "")
    return fdef is not None and fdef.kind.name == "tags"


def _manual_note(kind: str) -> str:
    return {
        "duplicate_uid": "merge the duplicates by hand: nothing is deleted automatically",
        "unexpected_in_target": "decide by hand: nothing is deleted automatically",
        "missing_uid": "set the link by hand",
        "unparseable_value": "fix the value at its source by hand",
    }.get(kind, "handle by hand")

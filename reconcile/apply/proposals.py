"""A reviewer's answer to an unmapped value becomes the next mapping version, as a new file.

The live mapping is never edited: the proposal is written to mappings/proposed/, with the
version bumped, a changelog entry naming the run and the reviewers, and every comment of the
original kept (ruamel.yaml round-trips them).
"""

from __future__ import annotations

import datetime as dt
from io import StringIO
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from ..atomic import atomic_path
from .plan import Change


def propose(mapping_file: Path, version: int, changes: list[Change], run_id: str) -> Path | None:
    """Write mappings/proposed/<name>.v<N+1>.yaml with the reviewers' codes; its path."""
    wanted = [c for c in changes if c.action == "propose" and c.after is not None]
    if not wanted:
        return None
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    doc = yaml.load(mapping_file.read_text("utf-8"))
    lines = []
    for c in wanted:
        pair = next(f for f in doc["entities"][c.entity]["fields"] if f.get("target") == c.field)
        if "values" not in pair:
            pair["values"] = CommentedMap()
        pair["values"][c.before] = c.after
        lines.append(
            f"map {pair.get('source')} {c.before!r} to {c.field} {c.after!r} "
            f"(reviewed by {c.reviewer} in run {run_id})"
        )
    doc["version"] = version + 1
    entry = CommentedMap(
        version=version + 1,
        date=dt.date.today().isoformat(),
        author=", ".join(sorted({c.reviewer for c in wanted})),
        changes=lines,
    )
    doc.setdefault("changelog", []).insert(0, entry)
    out = mapping_file.parent / "proposed" / f"{mapping_file.stem}.v{version + 1}.yaml"
    buffer = StringIO()
    yaml.dump(doc, buffer)
    with atomic_path(out) as tmp:
        tmp.write_text(buffer.getvalue(), "utf-8")
    return out

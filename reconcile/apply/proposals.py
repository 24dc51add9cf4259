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
    out = mapping_file.parent / "proposed" / f"{mapping_file.stem}.v{version + 1}.yaml"
    # A second apply adds to the open proposal instead of replacing earlier answers.
    base = out if out.is_file() else mapping_file
    doc = yaml.load(base.read_text("utf-8"))
    lines = []
    for c in wanted:
        pair = next(f for f in doc["entities"][c.entity]["fields"] if f.get("target") == c.field)
        if pair.get("role") == "tags":
            tags = pair.setdefault("tags", CommentedMap())
            tags.setdefault("rename", CommentedMap())[c.before] = c.after
        else:
            pair.setdefault("values", CommentedMap())[c.before] = c.after
        lines.append(
            f"map {pair.get('source')} {c.before!r} to {c.field} {c.after!r} "
            f"(reviewed by {c.reviewer} in run {run_id})"
        )
    authors = sorted({c.reviewer for c in wanted})
    if base is out and doc["changelog"] and doc["changelog"][0].get("version") == version + 1:
        entry = doc["changelog"][0]
        entry["changes"].extend(lines)
        entry["author"] = ", ".join(
            sorted(set(str(entry.get("author", "")).split(", ")) - {""} | set(authors))
        )
    else:
        doc["version"] = version + 1
        entry = CommentedMap(
            version=version + 1,
            date=dt.date.today().isoformat(),
            author=", ".join(authors),
            changes=lines,
        )
        doc.setdefault("changelog", []).insert(0, entry)
    buffer = StringIO()
    yaml.dump(doc, buffer)
    with atomic_path(out) as tmp:
        tmp.write_text(buffer.getvalue(), "utf-8")
    return out

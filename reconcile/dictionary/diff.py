"""The semantic differences between two versions of a data dictionary, for alignment meetings."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from deepdiff import DeepDiff

from .model import Dictionary


@dataclass(frozen=True)
class Change:
    """One difference a person would name: 'code drafting added to deal.quote_stage'."""

    entity: str
    field: str
    change: str
    item: str
    old: Any = None
    new: Any = None

    def to_dict(self) -> dict:
        return asdict(self)


_ADDED = ("dictionary_item_added", "iterable_item_added")
_REMOVED = ("dictionary_item_removed", "iterable_item_removed")


def diff_dictionaries(old: Dictionary, new: Dictionary) -> list[Change]:
    """Every semantic change from `old` to `new`, sorted by entity, field and change."""
    a = old.model_dump(mode="json", exclude={"changelog"}, exclude_defaults=True)
    b = new.model_dump(mode="json", exclude={"changelog"}, exclude_defaults=True)
    tree = DeepDiff(a, b, view="tree", ignore_order=True, verbose_level=2)
    changes: list[Change] = []
    for report, items in tree.items():
        for item in items:
            path = item.path(output_format="list")
            changes.append(_describe(report, path, item.t1, item.t2))
    return sorted(changes, key=lambda c: (c.entity, c.field, c.change, c.item))


def _describe(report: str, path: list, old: Any, new: Any) -> Change:
    kind = "added" if report in _ADDED else "removed" if report in _REMOVED else "changed"
    old = None if kind == "added" else old
    new = None if kind == "removed" else new
    if path[:1] != ["entities"]:
        return Change("", "", f"dictionary {path[0]} {kind}", _dotted(path[1:]), old, new)
    entity = path[1] if len(path) > 1 else ""
    if len(path) == 2:
        return Change(entity, "", f"entity {kind}", entity)
    if path[2] != "fields":
        return Change(entity, "", f"entity {path[2]} {kind}", _dotted(path[3:]), old, new)
    field = path[3] if len(path) > 3 else ""
    rest = path[4:]
    if not rest:
        detail = (old or new or {}).get("type", "") if isinstance(old or new, dict) else ""
        return Change(entity, field, f"field {kind}", str(detail), None, None)
    if rest[0] == "type":
        return Change(entity, field, "field retyped", "type", old, new)
    if rest[0] != "codes":
        return Change(entity, field, f"field {rest[0]} {kind}", _dotted(rest[1:]), old, new)
    code = rest[1] if len(rest) > 1 else ""
    sub = rest[2:]
    if not sub:
        labels = (old or new or {}).get("labels", {}) if isinstance(old or new, dict) else {}
        shown = " / ".join(labels.values()) or None
        return Change(
            entity, field, f"code {kind}", code, *((shown, None) if old else (None, shown))
        )
    if sub == ["deprecated"]:
        return Change(
            entity, field, "code deprecated" if new else "code no longer deprecated", code
        )
    if sub[0] == "labels":
        lang = sub[1] if len(sub) > 1 else ""
        return Change(entity, field, "label changed", f"{code} [{lang}]", old, new)
    return Change(entity, field, f"code {sub[0]} {kind}", code, old, new)


def _dotted(parts: list) -> str:
    return ".".join(str(p) for p in parts)

"""A problem found in a project's YAML: what, where, how bad."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import Location

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dictionary, mapping or config, at an exact place."""

    location: Location
    kind: str
    message: str
    severity: Severity = "error"

    def to_dict(self) -> dict:
        return {
            "file": str(self.location.file),
            "line": self.location.line,
            "column": self.location.column,
            "key_path": self.location.dotted,
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
        }

    def sort_key(self) -> tuple:
        loc = self.location
        return (str(loc.file), loc.line or 0, loc.column or 0, self.kind, self.message)

    def __str__(self) -> str:
        return f"{self.location}: {self.severity}: {self.message} [{self.kind}]"


def did_you_mean(word: object, candidates: Iterable[object]) -> str:
    """' (did you mean 'x'?)' for the closest candidate, or ''."""
    names = [str(c) for c in candidates]
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    if not close:
        lowered = {n.lower(): n for n in names}
        hit = lowered.get(str(word).lower())
        close = [hit] if hit else []
    return f" (did you mean '{close[0]}'?)" if close else ""

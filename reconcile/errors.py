"""The error hierarchy and the exit codes every command shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Location:
    """Where in which file something is: 1-based line and column, and the YAML key path."""

    file: Path | str
    line: int | None = None
    column: int | None = None
    key_path: tuple[str | int, ...] = ()

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.key_path)

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.key_path:
            where += f" ({self.dotted})"
        return where


class ReconcileError(Exception):
    """Base of every error the user can fix; rendered as one paragraph, exit code 2."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint

    def __str__(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f" {self.hint}"
        return text


class InputError(ReconcileError):
    """A file the user gave cannot be read or parsed (missing, malformed YAML, bad encoding)."""


class ConfigError(ReconcileError):
    """A dictionary, mapping or project config is readable but not valid."""


class SourceError(ReconcileError):
    """A CRM source (database or export file) cannot be reached or read."""


class OutputError(ReconcileError):
    """An output cannot be written."""

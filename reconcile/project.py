"""The project config (reconcile.yaml): both systems' sources, the dictionaries, the mapping."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import field_validator, model_validator

from .check import check_project
from .dictionary.model import Dictionary
from .errors import ConfigError, Location
from .mapping.model import Mapping
from .schema import Strict, check_format, validate
from .yamlsource import load_yaml

CONFIG_FILE = "reconcile.yaml"
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SystemConfig(Strict):
    """One CRM: its dictionary, and where its data is (a database URL or a folder of exports)."""

    dictionary: str
    url: str | None = None
    exports: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SystemConfig:
        if (self.url is None) == (self.exports is None):
            raise ValueError("give exactly one of: url (a SQLAlchemy URL) or exports (a folder)")
        return self


class ProjectConfig(Strict):
    format: int
    name: str | None = None
    source: SystemConfig
    target: SystemConfig
    mapping: str
    output: str = "runs"
    language: Literal["zh", "en"] = "en"
    as_of: dt.date | None = None
    history: str | None = None  # SQLAlchemy URL of the run history; default OUTPUT/history.sqlite

    _format = field_validator("format")(classmethod(lambda cls, v: check_format(v)))


@dataclass
class System:
    """A system ready to read: its dictionary and its resolved (secret-bearing) location."""

    role: str
    dictionary: Dictionary
    dictionary_file: Path
    url: str | None
    exports: Path | None

    @property
    def name(self) -> str:
        return self.dictionary.system


@dataclass
class Project:
    root: Path
    config: ProjectConfig
    source: System
    target: System
    mapping: Mapping
    mapping_file: Path

    history_url: str = ""

    @property
    def output_dir(self) -> Path:
        return self.root / self.config.output

    def history(self):
        """The run-history database (created on first use)."""
        from .history import History

        return History(self.history_url, project_key=str(self.root))

    def has_history(self) -> bool:
        prefix = "sqlite:///"
        return (
            not self.history_url.startswith(prefix)
            or Path(self.history_url[len(prefix) :]).is_file()
        )

    def versions(self) -> dict:
        """What a run was checked against, for traceability: versions and content hashes."""
        return {
            "source": _file_info(
                self.source.dictionary_file,
                self.source.dictionary.system,
                self.source.dictionary.version,
                self.root,
            ),
            "target": _file_info(
                self.target.dictionary_file,
                self.target.dictionary.system,
                self.target.dictionary.version,
                self.root,
            ),
            "mapping": _file_info(self.mapping_file, None, self.mapping.version, self.root),
        }


def _file_info(path: Path, system: str | None, version: int, root: Path) -> dict:
    info = {"file": str(path.relative_to(root)) if path.is_relative_to(root) else str(path)}
    if system:
        info["system"] = system
    info["version"] = version
    info["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return info


def expand_env(text: str, where: Location) -> str:
    """${NAME} and ${NAME:-default} from the environment; an unset NAME without default is an error."""

    def one(m: re.Match) -> str:
        value = os.environ.get(m[1])
        if value is not None and value != "":
            return value
        if m[2] is not None:
            return m[2]
        raise ConfigError(
            f"environment variable {m[1]} is not set",
            where,
            hint=f"Export {m[1]} (for example in the cron job's environment) or give a default "
            f"as ${{{m[1]}:-...}}.",
        )

    return _ENV.sub(one, text)


def load_project(root: Path | str) -> Project:
    """The project at `root`, fully validated; ConfigError at the first problem otherwise."""
    root = Path(root).resolve()
    config_path = root / CONFIG_FILE
    if not config_path.exists():
        raise ConfigError(
            f"no {CONFIG_FILE} in {root}",
            hint="Run inside a project folder, pass its path, or try `reconcile demo`.",
        )
    doc = load_yaml(config_path)
    config, problems = validate(ProjectConfig, doc)
    if config is None:
        first = problems[0]
        raise ConfigError(first.message, first.location)
    checked = check_project(root)
    if checked.errors:
        first = checked.errors[0]
        more = len(checked.errors) - 1
        raise ConfigError(
            first.message,
            first.location,
            hint=(f"{more} more problem(s). " if more else "")
            + "Run `reconcile check` to list them.",
        )
    systems = {}
    for role in ("source", "target"):
        sc: SystemConfig = getattr(config, role)
        dict_file = (root / sc.dictionary).resolve()
        loaded = next((d for d in checked.dictionaries if d.doc.path.resolve() == dict_file), None)
        if loaded is None:
            raise ConfigError(
                f"{role} dictionary {sc.dictionary} is not a file in data_dictionary/",
                doc.locate((role, "dictionary")),
            )
        url = exports = None
        if sc.url is not None:
            url = _resolve_sqlite(expand_env(sc.url, doc.locate((role, "url"))), root)
        else:
            exports = root / expand_env(sc.exports, doc.locate((role, "exports")))
        systems[role] = System(role, loaded.model, dict_file, url, exports)
    map_file = (root / config.mapping).resolve()
    mapping = next((m for m in checked.mappings if m.doc.path.resolve() == map_file), None)
    if mapping is None:
        raise ConfigError(
            f"mapping {config.mapping} is not a file in mappings/", doc.locate(("mapping",))
        )
    for role in ("source", "target"):
        pin, system = getattr(mapping.model, role), systems[role]
        if (pin.system, pin.version) != (system.dictionary.system, system.dictionary.version):
            raise ConfigError(
                f"the mapping's {role} is {pin.system} v{pin.version}, but reconcile.yaml names "
                f"{system.dictionary.system} v{system.dictionary.version}",
                doc.locate((role, "dictionary")),
            )
    proj = Project(root, config, systems["source"], systems["target"], mapping.model, map_file)
    if config.history:
        proj.history_url = _resolve_sqlite(
            expand_env(config.history, doc.locate(("history",))), root
        )
    else:
        proj.history_url = f"sqlite:///{(proj.output_dir / 'history.sqlite').as_posix()}"
    return proj


def _resolve_sqlite(url: str, root: Path) -> str:
    """Relative SQLite paths are relative to the project folder, not the working directory."""
    m = re.match(r"^(sqlite(?:\+\w+)?):///(?!/)(.+)$", url)
    if m and not m[2].startswith(":memory:") and not Path(m[2]).is_absolute():
        return f"{m[1]}:///{(root / m[2]).as_posix()}"
    return url

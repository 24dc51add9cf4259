"""Safe YAML loading that remembers where every key and value came from.

PyYAML keeps the last of two duplicate keys silently and reads `no`, `on` and `010` as a boolean
and an octal number; in a data dictionary those are enum codes. So scalars stay strings except
`null` and `true`/`false` (YAML 1.2 core), the models coerce numbers where a number is meant,
and duplicate keys are reported with their position instead of being dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import InputError, Location

MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_NODES = 500_000
_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")

Path_ = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and no implicit ints, floats or timestamps."""


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver("tag:yaml.org,2002:merge", re.compile(r"^(?:<<)$"), ["<"])
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), ["~", "n", "N", ""]
)


@dataclass
class Document:
    """A loaded YAML file: its data as plain Python, and the position of every key path."""

    path: Path
    data: Any
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    value_positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    duplicates: list[tuple[Path_, tuple[int, int], tuple[int, int]]] = field(default_factory=list)

    def locate(self, key_path: Path_ | list, at_key: bool = False) -> Location:
        """Where the value at `key_path` starts (or its key, with `at_key`); else its nearest ancestor."""
        key_path = tuple(key_path)
        exact = None if at_key else self.value_positions.get(key_path)
        if exact is not None:
            return Location(self.path, exact[0], exact[1], key_path)
        for end in range(len(key_path), -1, -1):
            pos = self.positions.get(key_path[:end])
            if pos is not None:
                return Location(self.path, pos[0], pos[1], key_path)
        return Location(self.path, None, None, key_path)


def load_yaml(path: Path | str) -> Document:
    """Read `path` safely; raise InputError naming file, line and column when it cannot be read."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"file not found: {path}", hint="Check the path and try again.") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if path.is_dir():
        raise InputError(f"{path} is a folder, expected a YAML file.")
    if size > MAX_FILE_BYTES:
        raise InputError(
            f"{path} is {size:,} bytes; YAML files over {MAX_FILE_BYTES:,} bytes are refused.",
            hint="A dictionary or mapping this large is almost certainly not hand-written YAML.",
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path} is not UTF-8 (byte {exc.start}).", hint="Save the file as UTF-8."
        ) from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path | str = "<string>") -> Document:
    path = Path(path)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = Location(path, mark.line + 1, mark.column + 1) if mark else Location(path)
        raise InputError(
            f"malformed YAML: {exc.problem or exc.context}",
            loc,
            hint="Fix the syntax at that position (indentation, a missing colon or quote).",
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"malformed YAML: {exc}", Location(path)) from None
    finally:
        loader.dispose()
    doc = Document(path, None)
    if node is None:
        return doc
    counter = [0]
    doc.data = _build(loader, node, (), doc, counter)
    return doc


def _build(loader: _Loader, node: yaml.Node, at: Path_, doc: Document, counter: list[int]) -> Any:
    counter[0] += 1
    if counter[0] > MAX_NODES:
        raise InputError(
            f"{doc.path} expands to more than {MAX_NODES:,} YAML nodes (aliases nested too deep?).",
            Location(doc.path, node.start_mark.line + 1, node.start_mark.column + 1),
        )
    doc.value_positions[at] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if not isinstance(node, yaml.ScalarNode) and node.tag not in _PLAIN_TAGS:
        raise InputError(
            f"unsupported YAML tag {node.tag}",
            Location(doc.path, *doc.value_positions[at]),
            hint="Only plain values, lists and mappings are allowed.",
        )
    doc.positions.setdefault(at, doc.value_positions[at])
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        first_seen: dict[Any, tuple[int, int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise InputError(
                    "YAML merge keys (<<) are not supported; write the keys out.",
                    Location(
                        doc.path, key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    ),
                )
            key = _scalar(loader, key_node, doc)
            pos = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in first_seen:
                doc.duplicates.append(((*at, key), pos, first_seen[key]))
            else:
                first_seen[key] = pos
            doc.positions[(*at, key)] = pos
            out[key] = _build(loader, value_node, (*at, key), doc, counter)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*at, i), doc, counter) for i, item in enumerate(node.value)]
    return _scalar(loader, node, doc)


def _scalar(loader: _Loader, node: yaml.Node, doc: Document) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise InputError(
            "a mapping key must be a plain value, not a list or mapping.",
            Location(doc.path, node.start_mark.line + 1, node.start_mark.column + 1),
        )
    if node.tag == "tag:yaml.org,2002:str":
        return node.value
    try:
        return loader.construct_object(node)
    except yaml.YAMLError as exc:
        raise InputError(
            f"unsupported YAML value: {getattr(exc, 'problem', exc)}",
            Location(doc.path, node.start_mark.line + 1, node.start_mark.column + 1),
            hint="Only plain values, lists and mappings are allowed.",
        ) from None

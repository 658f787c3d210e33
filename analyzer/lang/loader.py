"""Reading a rule file: bounded, data-only YAML into a tree that remembers where each value was.

Why YAML, and why not `yaml.safe_load`: rule files are written by hand, with comments, lists
and multi-line explanations, which YAML says most plainly; TOML nests mappings of lists of
mappings badly. But a plain `safe_load` forgets positions (every mistake must name
file:line:col) and expands aliases (a billion-laughs file would hang it). So the file is
*composed* with PyYAML's SafeLoader (its parser never constructs objects of arbitrary tags)
into nodes, each keeping its mark, and this module walks the nodes itself:

* the file's size (512 KiB), the nesting depth (32) and the number of values (20,000) are
  bounded before anything grows, so that even the slowest file is refused within seconds;
* YAML aliases and anchors are refused outright (the language has macros and lists for reuse),
  so nothing expands;
* only plain scalars (text, integers, floats, booleans, null) are accepted: any other tag
  (timestamps, binary, ``!!python/...``) is an error naming its position;
* a mapping key given twice is an error (YAML would silently keep the last).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.events import AliasEvent, MappingStartEvent, ScalarEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tracer.errors import InputError, RuleFileError

__all__ = ["Loc", "RuleFileError", "Y", "load_file", "load_text", "read_file"]

#: Bounds on a rule file (a hostile file is an error, never a hang).
MAX_BYTES = 512 * 1024
MAX_DEPTH = 32
MAX_NODES = 20_000

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


@dataclass(frozen=True)
class Loc:
    """A position in a rule file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass
class Y:
    """A located value: a scalar, a list of `Y` or a dict of `Y` (with each key's position)."""

    value: Any
    loc: Loc
    keys: dict[str, Loc] = field(default_factory=dict)
    #: Last line the value spans (for showing a rule's source).
    end_line: int = 0

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    def plain(self) -> Any:
        """The value without positions (for printing)."""
        if self.is_map:
            return {k: v.plain() for k, v in self.value.items()}
        if self.is_list:
            return [v.plain() for v in self.value]
        return self.value


def _loc(file: str, mark: Any) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1)


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses aliases and anchors and bounds depth and node count."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self._file = file
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        event = self.peek_event()
        here = _loc(self._file, event.start_mark)
        if isinstance(event, AliasEvent):
            raise RuleFileError([f"{here}: YAML aliases are not allowed in a rule file (use macros or lists)"])
        if isinstance(event, ScalarEvent | SequenceStartEvent | MappingStartEvent) and event.anchor:
            raise RuleFileError([f"{here}: YAML anchors are not allowed in a rule file (use macros or lists)"])
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise RuleFileError([f"{here}: more than {MAX_NODES} values: a rule file this big is refused"])
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise RuleFileError([f"{here}: nested deeper than {MAX_DEPTH} levels"])
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def load_text(text: str, file: str) -> Y | None:
    """The located tree of rule-file `text` (None when empty); `file` names it in errors."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BYTES:
        raise RuleFileError([f"{file}:1:1: larger than {MAX_BYTES} bytes: a rule file this big is refused"])
    loader = _BoundedLoader(text, file)
    try:
        node = loader.get_single_node()
        return None if node is None else _walk(loader, node, file)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = str(_loc(file, mark)) if mark is not None else f"{file}:1:1"
        raise RuleFileError([f"{where}: not valid YAML: {exc.problem or exc.context}"]) from None
    except yaml.YAMLError as exc:
        raise RuleFileError([f"{file}:1:1: not valid YAML: {exc}"]) from None
    finally:
        loader.dispose()


def read_file(path: str | Path) -> str:
    """The text of the rule file at `path`, read once, with the size bound first."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise InputError(f"cannot read rule file: {exc.strerror or exc}", path=p) from None
    if len(data) > MAX_BYTES:
        raise RuleFileError([f"{p}:1:1: larger than {MAX_BYTES} bytes: a rule file this big is refused"])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RuleFileError([f"{p}:1:1: not UTF-8 text (byte {exc.start})"]) from None


def load_file(path: str | Path) -> Y | None:
    """The located tree of the rule file at `path`."""
    return load_text(read_file(path), str(path))


def _walk(loader: yaml.SafeLoader, node: Node, file: str) -> Y:
    """Nodes to `Y` (iterative depth is already bounded by the composer)."""
    here = _loc(file, node.start_mark)
    end = node.end_mark.line + 1
    if isinstance(node, ScalarNode):
        if node.tag not in _SCALAR_TAGS:
            raise RuleFileError([f"{here}: tag {node.tag} is not allowed: only text, numbers, booleans and null"])
        try:
            value = loader.construct_object(node)
        except (yaml.YAMLError, ValueError) as exc:
            raise RuleFileError([f"{here}: bad value: {exc}"]) from None
        return Y(value, here, end_line=end)
    if isinstance(node, SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise RuleFileError([f"{here}: tag {node.tag} is not allowed"])
        return Y([_walk(loader, n, file) for n in node.value], here, end_line=end)
    if isinstance(node, MappingNode):
        if node.tag != "tag:yaml.org,2002:map":
            raise RuleFileError([f"{here}: tag {node.tag} is not allowed"])
        out: dict[str, Y] = {}
        keys: dict[str, Loc] = {}
        for k, v in node.value:
            kloc = _loc(file, k.start_mark)
            if k.tag == "tag:yaml.org,2002:merge":
                raise RuleFileError([f"{kloc}: YAML merge keys are not allowed (use macros)"])
            if not isinstance(k, ScalarNode) or k.tag not in _SCALAR_TAGS:
                raise RuleFileError([f"{kloc}: a mapping key must be plain text"])
            key = str(loader.construct_object(k))
            if key in out:
                raise RuleFileError([f"{kloc}: key {key!r} given twice (first at {keys[key]})"])
            out[key] = _walk(loader, v, file)
            keys[key] = kloc
        return Y(out, here, keys, end_line=end)
    raise RuleFileError([f"{here}: unexpected YAML node"])  # pragma: no cover

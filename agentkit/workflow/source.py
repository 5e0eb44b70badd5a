"""Reading a workflow file: safe YAML that remembers where every value was written.

Every problem found in a file, however late, is reported at its place:
`flow.yaml:12:9: steps[1].agent.tools[0]: no module 'mytols'`. A `Source`
keeps the position of each key and value by its path in the document.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from agentkit.errors import DocPath, Problem, WorkflowSpecError, format_path

__all__ = ["DocPath", "Problem", "Source", "format_path"]

_STR, _MERGE = "tag:yaml.org,2002:str", "tag:yaml.org,2002:merge"
_MOST_VALUES = 100_000
_DEEPEST = 100
"""Most levels of lists and mappings inside one another (far more than a workflow needs; the YAML
reader, the checks and Pydantic recurse once or more per level)."""
_PLAIN_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary", "merge")
}


@dataclass
class Source:
    """A parsed workflow file: its data and where each part of it was written."""

    file: str
    """The file's name as given (for messages)."""
    data: Any
    values: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    """Path → (line, column) of the value, 1-based."""
    keys: dict[DocPath, tuple[int, int]] = field(default_factory=dict)
    """Path → (line, column) of the key that names it, 1-based."""
    directory: Path | None = None
    """The directory the file is in (None for text not read from a file)."""

    @classmethod
    def read(cls, path: str | Path) -> Source:
        """Read and parse a file.

        Raises:
            WorkflowSpecError: the file cannot be read, is not YAML, or uses
                a tag or a repeated key.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise WorkflowSpecError(str(path), [Problem(f"cannot read the file: {exc}")]) from None
        return cls.parse(text, file=str(path), directory=path.resolve().parent)

    @classmethod
    def parse(cls, text: str, *, file: str = "<workflow>", directory: Path | None = None) -> Source:
        """Parse YAML text with the safe loader; see `read`."""
        try:
            loader = _Loader(text)
        except yaml.reader.ReaderError as exc:
            raise WorkflowSpecError(file, [_reader_problem(text, exc)]) from None
        try:
            node = loader.get_single_node()
            if node is None:
                raise WorkflowSpecError(file, [Problem("the file is empty; a workflow needs name and steps")])
            source = cls(file=file, data=None, directory=directory)
            problems = list(source._walk(node, ()))
            if problems:
                raise WorkflowSpecError(file, problems)
            source.data = loader.construct_document(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
            what = exc.problem or exc.context or "unreadable"
            if exc.context and exc.problem and exc.context_mark is not None:
                opened = exc.context_mark
                what += f" ({exc.context}, from line {opened.line + 1}, column {opened.column + 1})"
            raise WorkflowSpecError(file, [Problem(f"not valid YAML: {what}", (), line, column)]) from None
        except yaml.reader.ReaderError as exc:
            raise WorkflowSpecError(file, [_reader_problem(text, exc)]) from None
        except RecursionError:  # PyYAML's composer recurses once per level, before `_walk` can count them
            raise WorkflowSpecError(file, [Problem(_TOO_DEEP)]) from None
        except yaml.YAMLError as exc:
            raise WorkflowSpecError(file, [Problem(f"not valid YAML: {exc}")]) from None
        finally:
            loader.dispose()
        return source

    def _walk(self, node: yaml.Node, path: DocPath, inside: tuple[int, ...] = ()) -> Iterable[Problem]:
        start = (node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in inside:
            where = self.keys.get(path, start)
            yield Problem("an alias refers to a value that contains it; a workflow cannot be recursive", path, *where)
            return
        if len(self.values) >= _MOST_VALUES:
            yield Problem(
                f"the document has more than {_MOST_VALUES} values (aliases expanding?); write it out", path, *start
            )
            return
        if len(inside) >= _DEEPEST:
            yield Problem(_TOO_DEEP, path, *start)
            return
        inside = (*inside, id(node))
        self.values[path] = start
        if node.tag not in _PLAIN_TAGS:
            yield Problem(
                f"the tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed: a workflow is plain data; "
                "remove the tag",
                path,
                *start,
            )
            return
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in (_STR, _MERGE):
                    yield Problem(
                        "a key must be a plain name", path, key_node.start_mark.line + 1, key_node.start_mark.column + 1
                    )
                    continue
                key = key_node.value
                where = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                if key in seen:
                    yield Problem(
                        f"the key {key!r} is given twice (first on line {seen[key]}); keep one", (*path, key), *where
                    )
                    continue
                seen[key] = where[0]
                self.keys[(*path, key)] = where
                yield from self._walk(value_node, (*path, key), inside)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                yield from self._walk(item, (*path, index), inside)

    def where(self, path: Sequence[str | int], *, key: bool = False) -> tuple[int, int]:
        """The position of `path` (its key's with `key=True`), else of its nearest written ancestor."""
        path = tuple(path)
        if key and path in self.keys:
            return self.keys[path]
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def problem(self, message: str, path: Sequence[str | int], *, key: bool = False) -> Problem:
        """A problem at `path`."""
        return Problem(message, tuple(path), *self.where(path, key=key))

    def error(self, problems: Sequence[Problem]) -> WorkflowSpecError:
        """The error reporting `problems`, in file order."""
        return WorkflowSpecError(self.file, problems)


_TOO_DEEP = f"the document nests lists and mappings more than {_DEEPEST} levels deep; flatten it"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing `[` and `{` nested more than `_DEEPEST` deep as it reads them.

    Its reader looks at every open bracket again for each new one, so 5,000 of them take seconds
    (and 20,000 minutes) before anything else could count the levels.
    """

    def fetch_flow_collection_start(self, TokenClass: Any) -> None:
        if self.flow_level >= _DEEPEST:
            raise yaml.MarkedYAMLError(problem=_TOO_DEEP, problem_mark=self.get_mark())
        super().fetch_flow_collection_start(TokenClass)

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: yaml.Mark) -> list[str]:
        # PyYAML reads "\U00110000" (no such character) with chr(), whose ValueError is no YAMLError.
        try:
            return super().scan_flow_scalar_non_spaces(double, start_mark)
        except (ValueError, OverflowError):
            raise yaml.scanner.ScannerError(
                "while scanning a double-quoted scalar",
                start_mark,
                "an escape names no Unicode character (the largest is \\U0010FFFF)",
                self.get_mark(),
            ) from None

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # A plain scalar that only looks like a number or a date (0x_, 2024-13-45) makes PyYAML's
        # constructors raise ValueError, which is no YAMLError.
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError):
            if not isinstance(node, yaml.ScalarNode):
                raise
            kind = _LOOKS_LIKE.get(node.tag.rpartition(":")[2], "value of its tag")
            raise yaml.constructor.ConstructorError(
                None, None, f"{node.value!r} looks like a {kind} but is none; quote it", node.start_mark
            ) from None


_LOOKS_LIKE = {"int": "number", "float": "number", "timestamp": "date"}


def _reader_problem(text: str, exc: yaml.reader.ReaderError) -> Problem:
    before = text[: exc.position]
    line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
    return Problem(f"not valid YAML: the character {exc.character!r} is not allowed", (), line, column)

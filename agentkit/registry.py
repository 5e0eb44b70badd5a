"""One table per extension point, from a name to where its implementation lives.

    DIALECTS = Registry("dialect", {"gemma4": "agentkit.dialects.gemma4:Gemma4Dialect"})
    DIALECTS.names          # ("gemma4",)
    DIALECTS.load("gemma4") # imports the module then, and returns the attribute

Entries are `"module:attribute"` strings, so listing what exists imports
nothing and nothing registers itself at import; `add` extends a table at run
time (a plugin's dialect, say). Every unknown name raises `UnknownName`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

from agentkit.errors import UnknownName

__all__ = ["Registry"]

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to `"module:attribute"` targets (or to the objects themselves).

    Args:
        kind: What the names are, for errors (`runtime scheme`, `dialect`).
        entries: The built-in table.
    """

    def __init__(self, kind: str, entries: Mapping[str, str | T]) -> None:
        self.kind = kind
        self._entries: dict[str, str | T] = dict(entries)

    @property
    def names(self) -> tuple[str, ...]:
        """The known names, in the table's order."""
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def check(self, name: str, *, context: str = "") -> None:
        """Raise `UnknownName` unless `name` is in the table (imports nothing)."""
        if name not in self._entries:
            raise UnknownName(self.kind, name, self.names, context=context)

    def target(self, name: str) -> str:
        """Where `name`'s implementation lives, as `module:attribute` (for docs and errors)."""
        self.check(name)
        entry = self._entries[name]
        return entry if isinstance(entry, str) else f"{type(entry).__module__}:{getattr(entry, '__qualname__', entry)}"

    def load(self, name: str, *, context: str = "") -> T:
        """The implementation `name` names, importing its module now.

        Raises:
            UnknownName: no entry has that name.
        """
        self.check(name, context=context)
        entry = self._entries[name]
        if not isinstance(entry, str):
            return entry
        module, _, attribute = entry.partition(":")
        loaded: Any = getattr(importlib.import_module(module), attribute)
        return loaded  # type: ignore[no-any-return]

    def add(self, name: str, target: str | T) -> None:
        """Add or replace an entry: a `module:attribute` string or the object itself."""
        self._entries[name] = target

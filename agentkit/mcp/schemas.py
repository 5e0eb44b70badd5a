"""An MCP tool's input schema as agentkit's grammar reads it: 2020-12, its `$ref`s flattened.

MCP servers write their schemas with every generator there is: draft-07
`definitions`, `$ref`s into `#/properties/...`, a whole schema referring to
itself with `#`, tuple `items`. The grammar follows only `#/$defs/NAME`, and
`Tool.from_schema` checks against 2020-12. So here every local reference is
replaced by what it points to, except where that would never end (a
recursive type): those targets move to `$defs`, and the recursion goes
through `#/$defs/NAME`. A reference to another document is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from agentkit.schema import strip_titles

__all__ = ["SchemaProblem", "flatten"]

_DRAFT07_ITEMS_MOVED = "additionalItems"
_DATA = ("enum", "const", "default", "examples")
"""Keywords whose value is data, not schema: a `$ref` inside is not followed."""


class SchemaProblem(ValueError):
    """The schema cannot be flattened (a remote or broken `$ref`)."""


def flatten(schema: Mapping[str, Any]) -> dict[str, Any]:
    """`schema` with its local `$ref`s inlined, recursive ones through `$defs` (see the module).

    Raises:
        SchemaProblem: a `$ref` that is not local, or points nowhere.
    """
    root = dict(schema)
    defs: dict[str, Any] = {}
    names: dict[str, str] = {}
    out: dict[str, Any] = _Flattener(root, defs, names).node(_modern(root), ())
    for key in ("$schema", "$id", "definitions", "$defs"):
        out.pop(key, None)
    if "#" in names:  # the whole schema refers to itself: the root is a definition too
        defs[names["#"]] = dict(out)
    if defs:
        out["$defs"] = defs
    titled: dict[str, Any] = strip_titles(out)
    return titled  # generators' titles ("Word" for `word`) tell the model nothing, at a cost in tokens


def _modern(node: Any) -> Any:
    """Draft-07 idioms in 2020-12 terms: tuple `items` → `prefixItems`, `additionalItems` → `items`."""
    if isinstance(node, list):
        return [_modern(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: value if key in ("enum", "const", "default", "examples") else _modern(value) for key, value in node.items()
    }
    if isinstance(out.get("items"), list):
        out["prefixItems"] = out.pop("items")
        if _DRAFT07_ITEMS_MOVED in out:
            out["items"] = out.pop(_DRAFT07_ITEMS_MOVED)
    return out


class _Flattener:
    def __init__(self, root: dict[str, Any], defs: dict[str, Any], names: dict[str, str]) -> None:
        self.root = _modern(root)
        self.defs = defs
        self.names = names  # pointer -> name in $defs

    def node(self, node: Any, expanding: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [self.node(item, expanding) for item in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DATA:
                out[key] = value
            elif key in ("properties", "patternProperties", "dependentSchemas") and isinstance(value, dict):
                out[key] = {name: self.node(sub, expanding) for name, sub in value.items()}
            elif key not in ("definitions", "$defs", "$ref"):
                out[key] = self.node(value, expanding)
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return out
        target = self.pointer(ref)
        if ref in expanding:  # recursive: refer to it through $defs
            return {**out, "$ref": f"#/$defs/{self.hoist(ref)}"}
        resolved = self.node(target, (*expanding, ref))
        if not isinstance(resolved, dict):
            return out if resolved is True else {"not": {}}
        merged = {**resolved, **out}  # the referring node's own keywords win
        if ref in self.names:  # something inside referred back to it: keep it shared
            self.defs[self.names[ref]] = resolved
            return {**out, "$ref": f"#/$defs/{self.names[ref]}"}
        return merged

    def hoist(self, ref: str) -> str:
        if ref not in self.names:
            base = re.sub(r"[^A-Za-z0-9_]", "_", ref.rsplit("/", 1)[-1].lstrip("#")) or "root"
            name, n = base, 2
            while name in self.defs or name in self.names.values():
                name, n = f"{base}_{n}", n + 1
            self.names[ref] = name
            self.defs.setdefault(name, {})  # filled once its expansion finishes
        return self.names[ref]

    def pointer(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise SchemaProblem(f"$ref {ref!r} points outside the schema; only local references (#/...) are followed")
        node: Any = self.root
        for part in (p for p in ref[1:].split("/") if p):
            key = unquote(part).replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise SchemaProblem(f"$ref {ref!r} points to nothing in the schema")
        return node

"""What a workflow file may import: `agentkit.tools`, modules in its own directory, and modules the user allows.

A workflow is data that may come from anywhere, and importing a module runs
its code, so a module outside those three places is refused before it is
imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["BUILTIN_TOOLS", "ImportRefused", "Importer"]

BUILTIN_TOOLS = "agentkit.tools"


class ImportRefused(Exception):
    """A reference that cannot be imported (the message says why and what to do)."""


class Importer:
    """Imports `module:name` references for one workflow.

    Args:
        directory: The workflow file's directory (None: the workflow has no file).
        allowed: Module names the user allows (each with its submodules).
    """

    def __init__(self, directory: Path | None, allowed: Sequence[str] = ()) -> None:
        self.directory = directory
        self.allowed = tuple(allowed)

    def builtin_tool(self, name: str) -> Any:
        """A tool of `agentkit.tools` by name."""
        from agentkit.tool import FunctionTool

        module = importlib.import_module(BUILTIN_TOOLS)
        exported: list[str] = list(getattr(module, "__all__", ()))
        # The ready-made tools themselves; the factories (files, http_get...) need settings a name cannot give.
        names = [n for n in exported if isinstance(getattr(module, n), FunctionTool)]
        if name not in names:
            factory = (
                f"{name} makes a tool from settings (a directory, hosts...), which a workflow cannot give it yet; "
                if name in exported and callable(getattr(module, name)) and not isinstance(getattr(module, name), type)
                else f"no tool {name!r} in {BUILTIN_TOOLS} (it has: {', '.join(names)}); "
            )
            raise ImportRefused(
                f"{factory}name your own tool as module:function (a module beside the workflow may build it)"
            )
        return getattr(module, name)

    def load(self, ref: str) -> Any:
        """The object `ref` (`module:qualname`) names, if its module may be imported."""
        module_name, _, qualname = ref.partition(":")
        local = self._local(module_name)
        if not (local or self._builtin(module_name) or self._allowed(module_name)):
            if importlib.util.find_spec(module_name.split(".")[0]) is None:  # finding a top-level module runs no code
                looked = f"{self.directory} and " if self.directory is not None else ""
                raise ImportRefused(f"no module {module_name!r} (looked in {looked}the Python path)")
            where = f", modules in {self.directory}" if self.directory is not None else ""
            raise ImportRefused(
                f"module {module_name!r} is outside what a workflow may import ({BUILTIN_TOOLS}{where}, "
                f"and modules given with --allow-module); allow it with --allow-module {module_name.split('.')[0]}"
            )
        module = self._import(module_name, local)
        found: Any = module
        for part in qualname.split("."):
            if not hasattr(found, part):
                raise ImportRefused(f"module {module_name} has no {qualname!r}")
            found = getattr(found, part)
        return found

    def _builtin(self, module: str) -> bool:
        return module == BUILTIN_TOOLS or module.startswith(BUILTIN_TOOLS + ".")

    def _allowed(self, module: str) -> bool:
        return any(module == a or module.startswith(a + ".") for a in self.allowed)

    def _local(self, module: str) -> bool:
        """Whether `module` is a file in the workflow's directory (looked up without importing anything)."""
        if self.directory is None:
            return False
        base = self.directory.joinpath(*module.split("."))
        return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()

    def _import(self, module_name: str, local: bool) -> Any:
        added = local and str(self.directory) not in sys.path
        if added:
            sys.path.insert(0, str(self.directory))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module_name + ".").startswith(exc.name + "."):
                raise ImportRefused(f"no module {module_name!r}") from None
            raise ImportRefused(f"importing {module_name} failed: {exc}") from None
        except Exception as exc:  # the module raised while it was imported
            raise ImportRefused(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from None
        finally:
            if added:
                sys.path.remove(str(self.directory))
        if local and self.directory is not None:
            file = Path(getattr(module, "__file__", "") or "").resolve()
            if not file.is_relative_to(self.directory.resolve()):
                raise ImportRefused(
                    f"module {module_name!r} was already imported from {file}, not from {self.directory}; rename the "
                    "workflow's module"
                )
        return module

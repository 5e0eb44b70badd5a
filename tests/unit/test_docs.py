"""The documentation's examples are tests, and its facts are checked against the code.

Every ```python block in docs/*.md runs, unless its first line is `# not run`
(blocks that need the real vLLM engine; they must still compile). The blocks
of one page run in order in one namespace, like one script: a page's examples
build on each other. Each page runs as a fresh module whose `__file__` is the
Markdown file, with each block compiled at its own line numbers, so that
tracebacks point into the page and Pydantic can read attribute docstrings.
No block may start vLLM: here, starting an engine fails the test.

Also checked: every `make` target the docs name exists in the Makefile, every
runtime URI they name (in prose, or in code that does not run) has a scheme
`agentkit.runtimes.resolve` knows, and the presets table matches `PRESETS`.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agentkit import RuntimeUnavailable, ScriptError
from agentkit.runtimes import resolve
from agentkit.runtimes import vllm as vllm_runtime
from agentkit.runtimes.vllm import engine as vllm_engine

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
NOT_RUN = "# not run"

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_INLINE_CODE = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_URI = re.compile(r"(?<![\w./:>{,|-])([a-z][a-z0-9-]*):(?!//)([^\s\"'`),]+)")
_MAKE = re.compile(r"(?:^|\s)make\s+([a-z][\w-]*)")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the block's first line of code
    language: str
    code: str

    @property
    def runs(self) -> bool:
        return self.language == "python" and not self.code.startswith(NOT_RUN)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a page, in order."""
    found: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        language = opening["info"].strip().split(" ")[0]
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:])
            i += 1
        found.append(Block(page, i - len(body) + 1, language, "\n".join(body) + "\n"))
        i += 1
    return found


def prose(page: Path) -> str:
    """A page's text outside fenced code blocks."""
    out: list[str] = []
    in_block: str | None = None
    for line in page.read_text(encoding="utf-8").splitlines():
        opening = _FENCE.match(line)
        if in_block is None and opening:
            in_block = opening["fence"]
        elif in_block is not None and line.strip().startswith(in_block):
            in_block = None
        elif in_block is None:
            out.append(line)
    return "\n".join(out)


def inline_code(page: Path) -> list[str]:
    return [match[2].strip() for match in _INLINE_CODE.finditer(prose(page))]


def runnable_pages() -> list[Path]:
    return [page for page in PAGES if any(block.runs for block in blocks(page))]


# --- the examples -----------------------------------------------------------------------


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Examples run on ScriptedRuntime: starting vLLM is a bug in the docs."""

    def refuse(self: object) -> None:
        raise AssertionError("a docs example started vLLM: use ScriptedRuntime, or mark the block `# not run`")

    monkeypatch.setattr(vllm_engine._Engine, "start", refuse)
    monkeypatch.delenv("AGENTKIT_RUNTIME", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.mark.usefixtures("no_engine")
@pytest.mark.parametrize("page", runnable_pages(), ids=lambda page: page.name)
def test_examples_run(page: Path) -> None:
    name = "agentkit_docs_" + page.stem.replace("-", "_")
    module = types.ModuleType(name)
    module.__file__ = str(page)
    sys.modules[name] = module
    try:
        for block in blocks(page):
            if not block.runs:
                continue
            # Blank lines first, so the code keeps its line numbers in the page.
            code = compile("\n" * (block.line - 1) + block.code, str(page), "exec")
            try:
                exec(code, module.__dict__)
            except Exception as exc:
                raise AssertionError(f"the example at {block.where} failed: {exc!r}") from exc
    finally:
        del sys.modules[name]


@pytest.mark.parametrize(
    "block",
    [b for page in PAGES for b in blocks(page) if b.language == "python" and not b.runs],
    ids=lambda block: block.where,
)
def test_examples_that_do_not_run_still_compile(block: Block) -> None:
    compile(block.code, block.where, "exec")


def test_pages_have_examples() -> None:
    # Guards the block parser: if it found nothing, the tests above would pass vacuously.
    assert {page.name for page in runnable_pages()} >= {"index.md", "tools.md", "agents.md", "runtimes.md"}


# --- facts the docs name ----------------------------------------------------------------


def make_targets() -> set[str]:
    targets: set[str] = set()
    for line in (ROOT / "Makefile").read_text(encoding="utf-8").splitlines():
        rule = re.match(r"^([A-Za-z0-9_./ -]+?)\s*:(?!=)", line)
        if rule and not line.startswith("\t"):
            targets.update(name for name in rule[1].split() if not name.startswith("."))
    return targets


def named_make_targets() -> set[tuple[str, str]]:
    named: set[tuple[str, str]] = set()
    for page in PAGES:
        code = inline_code(page) + [block.code for block in blocks(page)]
        for text in code:
            for line in text.splitlines():
                named.update((page.name, target) for target in _MAKE.findall(line))
    return named


def test_named_make_targets_exist() -> None:
    named = named_make_targets()
    assert {target for _, target in named} >= {"demo", "test"}, "the docs should name make demo and make test"
    missing = sorted((page, target) for page, target in named if target not in make_targets())
    assert not missing, f"the docs name make targets the Makefile lacks: {missing}"


def named_uris() -> set[tuple[str, str]]:
    """URIs in inline code and in code blocks that do not run (those that run are checked by running)."""
    named: set[tuple[str, str]] = set()
    for page in PAGES:
        texts = inline_code(page) + [block.code for block in blocks(page) if not block.runs]
        for text in texts:
            # `module:Class` is an import path (an agent for `agentkit run`), and `mcp:NAME` a workflow's
            # MCP server's tools, not runtime URIs.
            named.update(
                (page.name, f"{scheme}:{rest}")
                for scheme, rest in _URI.findall(text)
                if not rest[0].isupper() and scheme != "mcp"
            )
    return named


@pytest.mark.usefixtures("no_engine")
def test_named_runtime_uris_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    # Resolving a vllm: URI builds a VLLMEngine without starting it; keep those
    # objects out of the process-wide engine cache.
    monkeypatch.setattr("agentkit.runtimes.vllm.uris._ENGINES", {})
    named = named_uris()
    assert {uri.partition(":")[0] for _, uri in named} >= {"vllm", "scripted"}
    for page, uri in sorted(named):
        scheme, _, value = uri.partition(":")
        try:
            resolve(uri)
        except RuntimeUnavailable as exc:
            pytest.fail(f"{page} names {uri!r}, which agentkit cannot resolve: {exc}")
        except ScriptError:  # a scripted: file that does not exist here; the scheme is known
            assert scheme == "scripted", f"{page}: resolving {uri!r} failed"
        if scheme == "vllm" and "/" not in value:
            assert value in vllm_runtime.PRESETS, f"{page} names {uri!r}, which is no preset"


def test_generated_docs_are_current() -> None:
    """The CLI reference, the store schema, the presets and servers tables and the
    workflow schema read as docs/generate.py makes them from the code."""
    generate = load_generator()
    assert len(generate.PARTS) == 5
    stale = generate.stale()
    assert not stale, f"out of date: {', '.join(str(p.name) for p in stale)}; regenerate with `make docs`"


def test_a_stale_section_is_caught_and_rewritten(tmp_path: Path) -> None:
    generate = load_generator()
    for part in generate.PARTS:
        (tmp_path / part.page).write_text((DOCS / part.page).read_text(encoding="utf-8"), encoding="utf-8")
    page = tmp_path / "servers.md"
    page.write_text(page.read_text(encoding="utf-8").replace("| `ollama` |", "| `olama` |"), encoding="utf-8")
    assert list(generate.stale(tmp_path)) == [page]
    for path, text in generate.stale(tmp_path).items():
        path.write_text(text, encoding="utf-8")
    assert generate.stale(tmp_path) == {}


def load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_generate"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module

"""A batch's files: items read from JSON Lines or Parquet, results written back the same way.

Input: one item per line (JSON Lines) or per row (Parquet, where pyarrow is
installed). For an agent, a row is an object with the prompt under
`prompt_key` (default `prompt`), or a bare JSON string; for a workflow, the
row is its inputs. An item's id is its `id_key` column (default `id`) when the
row has one, else a digest of the whole row: the same row always has the same
id, so a rerun finds what it did before.

Output: one row per item with `id`, `status`, `output` (JSON; in Parquet a
JSON text column), `run_id`, `tokens`, `seconds` and `error`. JSON Lines gets
each row appended as it finishes (a killed batch leaves every finished row, at
worst a torn last line); at the end the file is rewritten in input order.
Parquet cannot be appended to: it is written at the end (the store has the
results meanwhile). Declared secrets are masked in every row (`agentkit.secrets`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Literal

from agentkit.batch import Item, ItemResult, check_ids
from agentkit.errors import BatchInputError
from agentkit.secrets import redact

__all__ = ["OutputFile", "file_format", "item_id", "read_items", "read_rows"]

Format = Literal["jsonl", "parquet"]

_PYARROW = "Parquet needs pyarrow: pip install pyarrow (or the ray extra: pip install 'agentkit[ray]')"


def file_format(path: Path) -> Format:
    """`parquet` for .parquet/.pq files, else `jsonl`."""
    return "parquet" if path.suffix.lower() in (".parquet", ".pq") else "jsonl"


def item_id(row: Any) -> str:
    """A row's digest: 16 hex digits of the SHA-256 of its canonical JSON."""
    text = json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_rows(path: Path) -> list[tuple[int, Any]]:
    """The rows of an input file with their line (JSON Lines) or row (Parquet) numbers, from 1."""
    if not path.is_file():
        raise BatchInputError(f"{path}: no such file" if not path.exists() else f"{path} is not a file")
    if file_format(path) == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BatchInputError(f"{path}: {_PYARROW}") from None
        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow's errors have no common base
            raise BatchInputError(f"{path} cannot be read as Parquet: {exc}") from exc
        return list(enumerate(table.to_pylist(), start=1))
    rows: list[tuple[int, Any]] = []
    try:
        with path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise BatchInputError(f"{path}:{number}: not JSON ({exc.msg} at column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise BatchInputError(f"{path} is not UTF-8 text: {exc}") from None
    return rows


def read_items(
    path: Path,
    *,
    kind: Literal["agent", "workflow"],
    id_key: str = "id",
    prompt_key: str = "prompt",
) -> list[Item]:
    """The items of an input file: a prompt each (agents) or inputs (workflows), with stable ids.

    Raises:
        BatchInputError: the file, the line and what is wrong (the first five problems).
    """
    items: list[Item] = []
    problems: list[str] = []
    for number, row in read_rows(path):
        where = f"{path}:{number}"
        given_id = row.get(id_key) if isinstance(row, Mapping) else None
        if given_id is not None and not isinstance(given_id, str | int):
            problems.append(f"{where}: the {id_key!r} column must be a string or an integer, not {given_id!r}")
            continue
        ident = str(given_id) if given_id is not None else item_id(row)
        if kind == "agent":
            if isinstance(row, str):
                value: Any = row
            elif isinstance(row, Mapping) and isinstance(row.get(prompt_key), str):
                value = row[prompt_key]
            elif isinstance(row, Mapping):
                problems.append(f"{where}: no {prompt_key!r} text in this row (name the column with --prompt-key)")
                continue
            else:
                problems.append(f"{where}: an item is a JSON object or a string, not {type(row).__name__}")
                continue
        else:
            if not isinstance(row, Mapping):
                problems.append(f"{where}: a workflow's item is a JSON object of its inputs")
                continue
            value = {k: v for k, v in row.items() if k != id_key}
        items.append(Item(id=ident, value=value, index=len(items)))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BatchInputError("\n".join(problems[:5]) + more)
    if not items:
        raise BatchInputError(f"{path} has no items")
    try:
        check_ids(items)
    except BatchInputError as exc:
        hint = "" if any(isinstance(r, Mapping) and id_key in r for _, r in read_rows(path)) else " (identical rows?)"
        raise BatchInputError(f"{path}: {exc}{hint}") from None
    return items


class OutputFile:
    """A batch's output: rows appended as items finish, rewritten in input order at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.format = file_format(path)
        self.rows: dict[str, dict[str, Any]] = {}
        self.opened = False
        self._file: IO[str] | None = None
        if self.format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise BatchInputError(f"{path}: {_PYARROW}") from None

    def open(self, earlier: Iterable[ItemResult]) -> None:
        """Start the file afresh with what earlier attempts finished, then append to it."""
        for result in earlier:
            self.rows[result.id] = redact(result.row())
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.opened = True
        if self.format == "jsonl":
            self._replace(list(self.rows.values()))
            self._file = self.path.open("a", encoding="utf-8")

    def add(self, result: ItemResult) -> None:
        """One finished item: appended at once (JSON Lines), so a killed batch keeps it."""
        row = self.rows[result.id] = redact(result.row())
        if self._file is not None:
            self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self, order: Sequence[str]) -> None:
        """Write every row in `order` (the items' ids), replacing the file at once (if it was opened)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.opened:
            self._replace([self.rows[i] for i in order if i in self.rows])

    def _replace(self, rows: list[dict[str, Any]]) -> None:
        fd, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        try:
            if self.format == "parquet":
                os.close(fd)
                _write_parquet(Path(temp), rows)
            else:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
            os.chmod(temp, 0o666 & ~_umask())  # mkstemp's file is the owner's alone; an output is not
            os.replace(temp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("id", pa.string()),
            ("status", pa.string()),
            ("output", pa.string()),  # JSON text: a typed answer's fields, or a string answer quoted
            ("run_id", pa.string()),
            ("tokens", pa.int64()),
            ("seconds", pa.float64()),
            ("error", pa.string()),
        ]
    )
    flat = [
        {**r, "output": json.dumps(r["output"], ensure_ascii=False) if r["output"] is not None else None} for r in rows
    ]
    pq.write_table(pa.Table.from_pylist(flat, schema=schema), path)

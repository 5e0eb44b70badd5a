"""Secrets: values agentkit never stores, traces, logs or exports in clear.

    import agentkit

    token = agentkit.secret(os.environ["CRM_TOKEN"])  # declared: masked from now on
    agentkit.redact(f"token={token}")                  # 'token=[secret]'

Once a value is declared, every place agentkit writes to shows `MASK` in its
stead: the store (each string written to the SQLite file), the spans agentkit
makes (content, error statuses, exception events), the log records that reach
the handlers `agentkit.logs` sets up, and a batch's output rows. The run
itself keeps the real value: the model reads it, tools receive it.

Declared without being asked:

- the API key a server runtime sends (`api_key=`, `AGENTKIT_API_KEY`,
  `OPENAI_API_KEY`), and headers with a credential's name (`sensitive_name`)
  given to MCP servers, model servers and the OTLP exporter;
- in a workflow file, `${VAR}` values put into an MCP server's headers, and
  into its `env` or `url` when the variable's or the key's name is a
  credential's;
- the arguments a tool's schema marks `writeOnly` (what pydantic's `SecretStr`
  gives) or `format: password`, as soon as the model's turn names them.

The registry is the process's: a secret declared in one thread is masked in
all, and a process started later (a Ray worker, a stdio MCP server) knows
only what it declares itself. docs/secrets.md says what is and is not masked.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agentkit.errors import SecretError

if TYPE_CHECKING:
    from agentkit.messages import ToolCall
    from agentkit.tool import ToolSpec

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "RedactingFilter",
    "declare_arguments",
    "declare_calls",
    "declare_credential",
    "declare_headers",
    "declared",
    "forget_all",
    "marks_secrets",
    "redact",
    "redact_params",
    "redact_text",
    "secret",
    "sensitive_name",
]

MASK = "[secret]"
"""What stands in for a secret wherever agentkit writes."""

MIN_LENGTH = 8
"""The shortest value that can be a secret. A shorter one would mask ordinary
words everywhere, and could break the JSON the store keeps (a key, `true`)."""

_CREDENTIAL_WORDS = ("auth", "key", "token", "secret", "password", "passwd", "cookie", "credential", "signature")

T = TypeVar("T")


@dataclass(frozen=True)
class _Known:
    """What is declared: the values, and every form they are masked in (longest first)."""

    values: frozenset[str] = frozenset()
    forms: tuple[str, ...] = ()


_known = _Known()
"""Replaced whole under `_lock`; readers take it without the lock (one attribute read)."""
_lock = threading.Lock()
_NUMBER_TEXT = re.compile(r"[0-9eE+\-.]+")


# --- declaring ----------------------------------------------------------------------------------


def secret(value: str) -> str:
    """Declare `value` a secret, and return it.

        api = CRMClient(token=agentkit.secret(os.environ["CRM_TOKEN"]))

    From now on, in this process, agentkit writes `MASK` wherever `value`
    would appear: in the store, traces, logs and exports.

    Raises:
        SecretError: `value` is not a string, or is shorter than `MIN_LENGTH`.
    """
    if not isinstance(value, str):
        raise SecretError(f"a secret is a string, not a {type(value).__name__}; declare str(value) if that is it")
    if len(value) < MIN_LENGTH:
        raise SecretError(
            f"a secret must be at least {MIN_LENGTH} characters long (this one has {len(value)}): masking a "
            "shorter one would hide ordinary words everywhere; keep short values out of prompts instead"
        )
    if _numeric(value):
        raise SecretError(
            "a secret made only of digits (and a sign, point or exponent) cannot be masked: the store keeps "
            "numbers as JSON, where a mask would corrupt them; keep such values out of prompts and arguments"
        )
    _add(value)
    return value


def _numeric(value: str) -> bool:
    """Whether `value` could be (part of) a JSON number, whose text a mask would make unreadable."""
    return _NUMBER_TEXT.fullmatch(value) is not None


def declared() -> bool:
    """Whether any secret is declared in this process (when none is, masking costs nothing)."""
    return bool(_known.values)


def forget_all() -> None:
    """Forget every declared secret (a key that was rotated away, a test that starts afresh)."""
    global _known
    with _lock:
        _known = _Known()


def _add(value: str) -> None:
    global _known
    if value in _known.values or _numeric(value):  # a number's text is never masked (see `secret`)
        return
    with _lock:
        values = _known.values | {value}
        forms = {form for known in values for form in _forms(known)}
        _known = _Known(values=values, forms=tuple(sorted(forms, key=len, reverse=True)))


def _forms(value: str) -> set[str]:
    """`value` as it is written, and as JSON (once and twice: a call's arguments inside a
    raw reply) and Python's `repr` write it inside their quotes."""
    forms = {value, repr(value)[1:-1]}
    for inner in (True, False):  # with non-ASCII characters escaped, or not
        once = json.dumps(value, ensure_ascii=inner)[1:-1]
        forms.add(once)
        forms |= {json.dumps(once, ensure_ascii=outer)[1:-1] for outer in (True, False)}
    return {form for form in forms if len(form) >= MIN_LENGTH}


def sensitive_name(name: str) -> bool:
    """Whether a header or variable named `name` holds a credential: its name has one of
    auth, key, token, secret, password, passwd, cookie, credential, signature (any case)."""
    lowered = name.lower()
    return any(word in lowered for word in _CREDENTIAL_WORDS)


def declare_credential(value: str) -> None:
    """Declare a credential's value, and its token alone when it has a scheme (`Bearer TOKEN`).
    A value shorter than `MIN_LENGTH` is left alone."""
    value = value.strip()
    if len(value) >= MIN_LENGTH:
        _add(value)
    scheme, space, token = value.partition(" ")
    token = token.strip()
    if space and scheme.isalpha() and len(token) >= MIN_LENGTH:
        _add(token)


def declare_headers(headers: Mapping[str, str]) -> None:
    """Declare the values of the headers whose names are a credential's (`sensitive_name`)."""
    for name, value in headers.items():
        if isinstance(value, str) and sensitive_name(name):
            declare_credential(value)


# --- secret arguments ---------------------------------------------------------------------------

_MAX_DEPTH = 32
"""How deep the walk of a schema beside its value goes (a `$ref` may point to itself)."""


def _marks_secret(schema: Mapping[str, Any]) -> bool:
    return schema.get("writeOnly") is True or schema.get("format") == "password"


def marks_secrets(schema: Mapping[str, Any]) -> bool:
    """Whether some part of a JSON Schema is marked secret (`writeOnly`, `format: password`)."""
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            if _marks_secret(node):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def declare_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> None:
    """Declare the string values of `arguments` that `schema` (the tool's parameters) marks secret.

    A value shorter than `MIN_LENGTH` is left alone (see `MIN_LENGTH`).
    """
    for value in _secret_strings(schema, arguments, schema, 0):
        if len(value) >= MIN_LENGTH:
            _add(value)


def masked_arguments(schema: Mapping[str, Any], arguments: Mapping[str, Any]) -> bool:
    """Whether an argument `schema` marks secret holds `MASK`: a call read back from the
    store (a resumed run), whose secret value was never kept."""
    return any(value == MASK for value in _secret_strings(schema, arguments, schema, 0))


def declare_calls(calls: Sequence[ToolCall], specs: Sequence[ToolSpec]) -> None:
    """Declare the secret arguments of a turn's `calls`, by the schemas of the tools offered (`specs`)."""
    if not calls:
        return
    schemas = {spec.name: spec.parameters for spec in specs}
    for call in calls:
        schema = schemas.get(call.name)
        if schema is not None:
            declare_arguments(schema, call.arguments)


def _secret_strings(schema: Any, value: Any, root: Mapping[str, Any], depth: int) -> Iterator[str]:
    """The strings in `value` that `schema` (a part of `root`) marks secret."""
    if depth > _MAX_DEPTH or not isinstance(schema, Mapping):
        return
    if _marks_secret(schema):
        if isinstance(value, str):
            yield value
        return
    ref = schema.get("$ref")
    if isinstance(ref, str):
        yield from _secret_strings(_resolve(root, ref), value, root, depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        for option in options if isinstance(options, list) else ():
            yield from _secret_strings(option, value, root, depth + 1)
    if isinstance(value, Mapping):
        yield from _in_object(schema, value, root, depth)
    elif isinstance(value, list):
        yield from _in_array(schema, value, root, depth)


def _in_object(
    schema: Mapping[str, Any], value: Mapping[str, Any], root: Mapping[str, Any], depth: int
) -> Iterator[str]:
    properties = schema.get("properties")
    properties = properties if isinstance(properties, Mapping) else {}
    extra = schema.get("additionalProperties")
    for name, item in value.items():
        yield from _secret_strings(properties.get(name, extra), item, root, depth + 1)


def _in_array(schema: Mapping[str, Any], value: list[Any], root: Mapping[str, Any], depth: int) -> Iterator[str]:
    prefix = schema.get("prefixItems")
    prefix = prefix if isinstance(prefix, list) else []
    items = schema.get("items")
    for index, item in enumerate(value):
        yield from _secret_strings(prefix[index] if index < len(prefix) else items, item, root, depth + 1)


def _resolve(root: Mapping[str, Any], ref: str) -> Any:
    """The part of `root` a local `$ref` (`#/$defs/Name`) points to, or None."""
    if not ref.startswith("#"):
        return None
    node: Any = root
    for part in ref.removeprefix("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        node = node.get(part) if isinstance(node, Mapping) else None
    return node


# --- masking ------------------------------------------------------------------------------------


def redact_text(text: str) -> str:
    """`text` with each declared secret (in any of the forms it is written in) replaced by `MASK`."""
    for form in _known.forms:
        if form in text:
            text = text.replace(form, MASK)
    return text


def redact(value: T) -> T:
    """`value` with every declared secret masked: a string, or a JSON-like value (dicts,
    lists, tuples; keys too), copied where something was masked. Other values are returned as they are.

        agentkit.redact({"query": f"token {token}"})  # {'query': 'token [secret]'}
    """
    if not _known.forms:
        return value
    return cast("T", _redact(value, 0))


def _redact(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 100:  # deeper than any JSON a run writes; a cycle otherwise
        return value
    if isinstance(value, Mapping):
        return {_redact(key, depth + 1): _redact(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, depth + 1) for item in value)
    return value


def redact_params(params: Sequence[Any]) -> Sequence[Any]:
    """An SQL statement's parameters with every string masked (`params` itself when no secret is declared)."""
    if not _known.forms:
        return params
    return [redact_text(param) if isinstance(param, str) else param for param in params]


class RedactingFilter(logging.Filter):
    """A log filter that masks declared secrets in each record: its message, exception and stack.

        handler.addFilter(RedactingFilter())  # on a handler: a logger's filters miss propagated records

    The handlers `agentkit.logs` sets up have one. The record is changed in
    place (its message is formatted once, here), so handlers after this one
    see the masked record too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _known.forms:
            return True
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the message: the handler reports it as it would
            return True
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True

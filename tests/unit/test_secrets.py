"""agentkit.secrets: declaring secrets, masking them, and each place that declares or masks them.

The whole path, every exit scanned byte by byte, is tests/unit/test_secrets_scan.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pydantic
import pytest
from opentelemetry.sdk.trace import Span, TracerProvider

import agentkit
from agentkit import Agent, AgentkitError, RunResult, SecretError, Tool, ToolResult, tool
from agentkit import mcp as agentkit_mcp
from agentkit.batch import ItemResult
from agentkit.batch.files import OutputFile
from agentkit.errors import AwaitingApproval, ModelOutputError
from agentkit.logs import quiet_logs
from agentkit.loop import WITHHELD
from agentkit.runtime import ModelRequest
from agentkit.runtimes import OpenAICompatible, ScriptedRuntime, VLLMServer
from agentkit.runtimes.function import FunctionRuntime
from agentkit.secrets import (
    MASK,
    RedactingFilter,
    declare_arguments,
    declare_credential,
    declare_headers,
    declared,
    forget_all,
    marks_secrets,
    redact,
    redact_params,
    redact_text,
    secret,
    sensitive_name,
)
from agentkit.store import Store
from agentkit.tracing.exporting import _declare_exporter_headers
from agentkit.tracing.spans import dumps, fail, record_exception
from agentkit.workflow import Workflow
from agentkit.workflow.servers import toolsets


@pytest.fixture(autouse=True)
def nothing_declared() -> Iterator[None]:
    """Each test starts and ends with no secret declared (the registry is the process's)."""
    forget_all()
    yield
    forget_all()


def planted(prefix: str = "sk-planted-") -> str:
    return prefix + uuid.uuid4().hex


def file_bytes(db: Path) -> bytes:
    """The database file and its write-ahead log, as they are on disk."""
    wal = db.with_name(db.name + "-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def calls(*pairs: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": args} for name, args in pairs]}


# --- declaring and masking ----------------------------------------------------------------------


def test_a_declared_secret_is_masked_in_text_and_json_values_and_returned_as_it_is() -> None:
    key = planted()
    assert agentkit.secret(key) == key
    assert declared()
    assert agentkit.redact(f"token={key}; again {key}") == f"token={MASK}; again {MASK}"
    nested = {"a": [key, ("x", f"<{key}>")], key: 1, "n": 3}
    assert redact(nested) == {"a": [MASK, ("x", f"<{MASK}>")], MASK: 1, "n": 3}
    assert redact(b"bytes are left alone " + key.encode()) == b"bytes are left alone " + key.encode()


def test_nothing_declared_returns_the_very_same_values() -> None:
    value = {"a": ["sk-not-declared-1234"]}
    params = ["sk-not-declared-1234", 1]
    assert redact(value) is value
    assert redact_params(params) is params
    assert not declared()


def test_every_form_a_secret_is_written_in_is_masked() -> None:
    key = 'pa"ss\\wörd-\n-' + uuid.uuid4().hex[:8]
    secret(key)
    once = json.dumps({"key": key}, ensure_ascii=False)
    written = [
        once,
        json.dumps({"key": key}),  # \u00f6
        json.dumps({"raw": once}),  # a call's arguments inside a raw reply
        json.dumps({"raw": json.dumps({"key": key})}),
        repr({"key": key}),
        f"plain {key} text",
    ]
    for text in written:
        masked = redact_text(text)
        assert "wörd" not in masked, text
        assert "w\\u00f6rd" not in masked, text
        assert MASK in masked


def test_masked_json_stays_json() -> None:
    key = planted()
    secret(key)
    text = json.dumps({"arguments": {"key": key, "list": [key, 1]}})
    assert json.loads(redact_text(text)) == {"arguments": {"key": MASK, "list": [MASK, 1]}}


@pytest.mark.parametrize("value", ["short", "", 12345678, None, "40128888", "-1.5e+300123"])
def test_a_value_too_short_not_a_string_or_a_numbers_text_is_refused(value: Any) -> None:
    with pytest.raises(SecretError, match="secret") as refused:
        secret(value)
    assert isinstance(refused.value, AgentkitError)
    assert not declared()


def test_a_stored_run_holding_a_number_that_contains_a_credentials_digits_stays_readable(tmp_path: Path) -> None:
    # Digits-only credentials are never declared (a header, say): masked inside a JSON number
    # they would leave the stored message unreadable.
    declare_credential("40128888")
    store = Store(tmp_path / "runs.db")
    result = Agent(runtime=ScriptedRuntime(["Account 401288889 holds 120 EUR."]), store=store).run("Balance?")
    assert store.load(result.run_id).messages[-1].text == "Account 401288889 holds 120 EUR."
    assert not declared()


def test_forget_all_forgets() -> None:
    key = planted()
    secret(key)
    forget_all()
    assert redact_text(key) == key


def test_secrets_declared_from_many_threads_are_all_kept() -> None:
    keys = [[planted(f"t{n}-") for _ in range(50)] for n in range(8)]
    threads = [threading.Thread(target=lambda mine=mine: [secret(k) for k in mine]) for mine in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = " ".join(k for mine in keys for k in mine)
    assert set(redact_text(everything).split()) == {MASK}


def test_a_secret_inside_another_is_masked_whole() -> None:
    inner = planted("inner-")
    outer = f"outer-{inner}-outer"
    secret(inner)
    secret(outer)
    assert redact_text(f"[{outer}] [{inner}]") == f"[{MASK}] [{MASK}]"


# --- names and headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sensitive"),
    [
        ("Authorization", True),
        ("X-API-Key", True),
        ("NOTES_TOKEN", True),
        ("Cookie", True),
        ("DB_PASSWORD", True),
        ("x-amz-signature", True),
        ("Content-Type", False),
        ("Accept", False),
        ("HOME", False),
        ("PATH", False),
    ],
)
def test_credential_names(name: str, sensitive: bool) -> None:
    assert sensitive_name(name) is sensitive


def test_headers_with_a_credentials_name_are_declared_token_and_all() -> None:
    token = planted()
    declare_headers({"Authorization": f"Bearer {token}", "Content-Type": "application/json", "X-Api-Key": "short"})
    assert redact_text(f"sent {token}") == f"sent {MASK}"
    assert redact_text(f"Bearer {token}") == MASK
    assert redact_text("application/json") == "application/json"


def test_a_runtimes_api_key_is_declared_given_or_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    given, from_env = planted(), planted("sk-env-")
    OpenAICompatible("http://127.0.0.1:9/v1", model="m", api_key=given)
    monkeypatch.setenv("AGENTKIT_API_KEY", from_env)
    VLLMServer("http://127.0.0.1:9/v1")
    assert redact_text(f"{given} {from_env}") == f"{MASK} {MASK}"


def test_no_api_key_declares_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTKIT_API_KEY", raising=False)
    assert OpenAICompatible("http://127.0.0.1:9/v1", model="m").headers == {}
    assert not declared()


def test_mcp_headers_and_credential_env_values_are_declared() -> None:
    pytest.importorskip("mcp")
    header, env_token, home = planted(), planted("tok-"), "/home/someone/folder"
    agentkit_mcp.http("http://127.0.0.1:9/mcp", headers={"Authorization": f"Bearer {header}"})
    agentkit_mcp.stdio("server", env={"NOTES_TOKEN": env_token, "HOME": home})
    assert redact_text(f"{header} {env_token} {home}") == f"{MASK} {MASK} {home}"


def test_a_workflows_variables_are_declared_in_headers_and_credential_env_entries(tmp_path: Path) -> None:
    pytest.importorskip("mcp")
    path = tmp_path / "flow.yaml"
    path.write_text(
        """
name: secrets
mcp_servers:
  notes:
    command: [notes-server, --user, "${NOTES_USER}"]
    env: {NOTES_TOKEN: "${FROM_ENV}", PLAIN: "${NOTES_DIR}", OTHER: "${SERVICE_KEY}"}
  web:
    url: "https://${WEB_HOST}/mcp"
    headers: {X-Custom: "${WEB_VALUE}"}
steps:
  - id: a
    tool: mcp:notes/search
    arguments: {word: tea}
""",
        encoding="utf-8",
    )
    flow = Workflow.load(path)
    environ = {
        "NOTES_USER": "ada-lovelace",
        "FROM_ENV": planted("env-"),
        "NOTES_DIR": str(tmp_path),
        "SERVICE_KEY": planted("key-"),
        "WEB_HOST": "example.com",
        "WEB_VALUE": planted("hdr-"),
    }
    toolsets(flow.plan.source, flow.spec.mcp_servers, environ)
    for name in ("FROM_ENV", "SERVICE_KEY", "WEB_VALUE"):
        assert redact_text(environ[name]) == MASK, name
    for name in ("NOTES_USER", "NOTES_DIR", "WEB_HOST"):
        assert redact_text(environ[name]) == environ[name], name


def test_the_otlp_exporters_headers_are_declared(monkeypatch: pytest.MonkeyPatch) -> None:
    vendor, encoded = planted("hny-"), planted("b64-")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"x-honeycomb-team={vendor}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", f"Authorization=Basic%20{encoded}")
    _declare_exporter_headers()
    assert redact_text(f"{vendor} {encoded}") == f"{MASK} {MASK}"


# --- secret arguments ---------------------------------------------------------------------------


class Account(pydantic.BaseModel):
    user: str
    password: pydantic.SecretStr


def test_schemas_mark_secrets_where_pydantic_and_json_schema_put_them() -> None:
    key, nested, listed, extra = planted(), planted("n-"), planted("l-"), planted("x-")

    @tool
    def login(key: pydantic.SecretStr, note: str, account: Account | None = None) -> str:
        """Log in."""
        return "ok"

    parameters = login.spec.parameters
    assert marks_secrets(parameters)
    assert not marks_secrets({"type": "object", "properties": {"note": {"type": "string"}}})
    declare_arguments(parameters, {"key": key, "note": "a plain note", "account": {"user": "ada", "password": nested}})
    schema = {
        "type": "object",
        "properties": {"list": {"type": "array", "items": {"type": "string", "writeOnly": True}}},
        "additionalProperties": {"type": "string", "format": "password"},
    }
    declare_arguments(schema, {"list": [listed], "anything": extra})
    assert redact_text(f"{key} {nested} {listed} {extra}") == " ".join([MASK] * 4)
    assert redact_text("a plain note ada") == "a plain note ada"


def test_a_schema_that_refers_to_itself_is_walked_to_a_bounded_depth() -> None:
    schema = {"$ref": "#/$defs/A", "$defs": {"A": {"anyOf": [{"$ref": "#/$defs/A"}]}}}
    declare_arguments(schema, {"x": "y" * 20})
    assert not declared()


def test_a_secret_argument_reaches_the_tool_whole_and_the_store_never_sees_it(tmp_path: Path) -> None:
    key, received = planted(), []

    @tool
    def use_key(key: pydantic.SecretStr, note: str) -> str:
        """Use a key."""
        received.append(key.get_secret_value())
        return f"used a key for {note}"

    runtime = ScriptedRuntime([calls(("use_key", {"key": key, "note": "the report"})), "done"])
    store = Store(tmp_path / "runs.db")
    result: RunResult[str] = Agent(runtime=runtime, tools=[use_key], store=store).run("go")
    assert received == [key]
    assert key.encode() not in file_bytes(tmp_path / "runs.db")
    stored = store.load(result.run_id)
    call = stored.steps[0].response.message.tool_calls[0]
    assert call.arguments == {"key": MASK, "note": "the report"}
    assert key not in stored.steps[0].response.raw_text
    assert [m.content for m in stored.messages if isinstance(m, ToolResult)] == ["used a key for the report"]
    store.close()


def test_an_unreadable_turn_is_not_stored_when_a_tool_takes_secrets(tmp_path: Path) -> None:
    # The turn cannot be read, so its secret argument cannot be found and declared: its raw text is withheld.
    key = planted()

    @tool
    def use_key(key: pydantic.SecretStr, note: str) -> str:
        """Use a key."""
        return "used"

    garbled = f'<|tool_call>call:use_key{{key:<|"|>{key}<|"|>,note:}}}}'

    def model(request: ModelRequest, index: int) -> Any:
        if index == 0:
            raise ModelOutputError("malformed tool call", garbled)
        return "done"

    store = Store(tmp_path / "runs.db")
    result = Agent(runtime=FunctionRuntime(model), tools=[use_key], store=store).run("go")
    assert result.output == "done"
    assert key.encode() not in file_bytes(tmp_path / "runs.db")
    assert store.load(result.run_id).steps[0].response.raw_text == WITHHELD
    store.close()


def test_a_resumed_call_whose_secret_was_masked_is_answered_not_run_with_the_mask(tmp_path: Path) -> None:
    key, received = planted(), []

    @tool(requires_approval=True)
    def pay(key: pydantic.SecretStr, amount: int) -> str:
        """Pay with a key."""
        received.append(key.get_secret_value())
        return "paid"

    store = Store(tmp_path / "runs.db")
    turns: list[Any] = [calls(("pay", {"key": key, "amount": 3}))]
    with pytest.raises(AwaitingApproval) as paused:
        Agent(runtime=ScriptedRuntime(turns), tools=[pay], store=store).run("pay")
    later = Agent(runtime=ScriptedRuntime(["Could not pay."]), tools=[pay], store=store)
    result = later.resume(paused.value.run_id, approvals={paused.value.calls[0].id: True})
    assert received == []  # never with "[secret]" as the key
    answer = next(m for m in result.messages if isinstance(m, ToolResult))
    assert answer.is_error
    assert "secret argument" in str(answer.content)
    assert result.output == "Could not pay."
    store.close()


def test_secret_fields_of_tool_classes_and_write_only_schemas_are_declared_when_validated() -> None:
    class Login(Tool):
        """Log in."""

        password: pydantic.SecretStr

        def run(self) -> str:
            return hashlib.sha256(self.password.get_secret_value().encode()).hexdigest()

    by_schema = Tool.from_schema(
        "connect",
        "Connect.",
        {"type": "object", "properties": {"token": {"type": "string", "writeOnly": True}}},
        lambda token: len(token),
    )
    password, token = planted("pw-"), planted("tk-")
    assert Login.bind().validate({"password": password})() == hashlib.sha256(password.encode()).hexdigest()
    assert by_schema.validate({"token": token})() == len(token)
    assert redact_text(f"{password} {token}") == f"{MASK} {MASK}"


def test_a_secret_argument_shorter_than_the_minimum_is_not_declared() -> None:
    @tool
    def pin(code: pydantic.SecretStr) -> str:
        """Enter a PIN."""
        return "ok"

    pin.bind(None).validate({"code": "1234"})
    assert not declared()


# --- where secrets are masked -------------------------------------------------------------------


def test_every_string_the_store_writes_is_masked(tmp_path: Path) -> None:
    key = planted()
    secret(key)
    runtime = ScriptedRuntime([calls(("echo", {"text": f"say {key}"})), f"the key is {key}"])

    @tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    store = Store(tmp_path / "runs.db")
    result: RunResult[str] = Agent(runtime=runtime, tools=[echo], store=store).run(f"my key is {key}")
    assert result.output == f"the key is {key}"  # the run itself has the real value
    assert key.encode() not in file_bytes(tmp_path / "runs.db")
    records = "\n".join(json.dumps(r) for r in store.load(result.run_id).records())
    assert key not in records
    assert f"my key is {MASK}" in records
    assert f"say {MASK}" in records
    store.close()


def test_log_records_are_masked_in_message_arguments_exceptions_and_stacks(tmp_path: Path) -> None:
    key = planted()
    secret(key)
    path = tmp_path / "log.txt"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.secrets")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("a message with %s", key)
        try:
            raise ValueError(f"a failure quoting {key}")
        except ValueError:
            logger.exception("it failed")
        logger.warning("and a stack", stack_info=True, extra={"unused": key})
        logger.warning("%s %s", "arguments that do not fit")  # the handler reports it, as it would
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        handler.close()
    written = path.read_text(encoding="utf-8")
    assert key not in written
    assert f"a message with {MASK}" in written
    assert f"ValueError: a failure quoting {MASK}" in written


def test_agentkits_log_file_masks_secrets(tmp_path: Path) -> None:
    key = planted()
    secret(key)
    path = tmp_path / "agentkit.log"
    logs = quiet_logs(path, announce=False, level=logging.DEBUG)
    try:
        logging.getLogger("agentkit.test").debug("debug with %s", key)
    finally:
        logs.close()
    written = path.read_text(encoding="utf-8")
    assert f"debug with {MASK}" in written
    assert key not in written


def test_span_content_statuses_and_exception_events_are_masked() -> None:
    key = planted()
    secret(key)
    span = cast("Span", TracerProvider().get_tracer("tests").start_span("a span"))
    fail(span, f"ServerError: refused {key}")
    try:
        raise RuntimeError(f"boom {key}")
    except RuntimeError as exc:
        record_exception(span, exc)
    span.end()
    assert span.status.description == f"ServerError: refused {MASK}"
    (event,) = span.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == f"boom {MASK}"
    assert key not in str(event.attributes["exception.stacktrace"])
    assert json.loads(dumps({"arguments": {"k": key}})) == {"arguments": {"k": MASK}}


def test_batch_output_rows_are_masked(tmp_path: Path) -> None:
    key = planted()
    secret(key)
    output = OutputFile(tmp_path / "out.jsonl")
    output.open([])
    output.add(ItemResult(id="a", index=0, status="done", output={"answer": f"it is {key}"}))
    appended = (tmp_path / "out.jsonl").read_text(encoding="utf-8")
    output.add(ItemResult(id="b", index=1, status="failed", error=f"ServerError: {key}"))
    output.close(["a", "b"])
    for text in (appended, (tmp_path / "out.jsonl").read_text(encoding="utf-8")):
        assert key not in text
        assert MASK in text

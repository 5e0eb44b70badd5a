"""agentkit: agents for Gemma 4 open models, with tool calls valid by construction.

The names users need are here; everything else is importable from its module
but not advertised. Importing agentkit is light: no vLLM, torch or
OpenTelemetry exporter is loaded until a runtime needs it.
"""

from agentkit.agent import Agent, ResumeOptions
from agentkit.budget import Budget
from agentkit.errors import (
    AgentkitError,
    AwaitingApproval,
    BudgetExceeded,
    ContextLengthExceeded,
    MaxStepsExceeded,
    ModelOutputError,
    OutputTruncated,
    OutputValidationError,
    RunFailed,
    RuntimeUnavailable,
    ScriptError,
    SecretError,
    ServerError,
    StoreError,
    ToolArgumentsError,
    ToolDefinitionError,
    ToolExecutionError,
    ToolsetError,
    ToolTimeoutError,
    TracingError,
    UnknownToolError,
    WorkflowFailed,
    WorkflowSpecError,
)
from agentkit.events import ModelTurn, RunEvent, RunFinished, RunParent, RunPaused, RunResult, Step, ToolsFinished
from agentkit.messages import AssistantMessage, Message, SystemMessage, ToolCall, ToolResult, UserMessage
from agentkit.runtime import (
    ModelRequest,
    ModelResponse,
    Runtime,
    RuntimeInfo,
    Sampling,
    TextDelta,
    ThinkingDelta,
    ToolCallReady,
    Usage,
)
from agentkit.secrets import redact, secret
from agentkit.tool import Tool, ToolOptions, ToolSpec, tool
from agentkit.toolset import Toolset

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentkitError",
    "AssistantMessage",
    "AwaitingApproval",
    "Budget",
    "BudgetExceeded",
    "ContextLengthExceeded",
    "MaxStepsExceeded",
    "Message",
    "ModelOutputError",
    "ModelRequest",
    "ModelResponse",
    "ModelTurn",
    "OutputTruncated",
    "OutputValidationError",
    "ResumeOptions",
    "RunEvent",
    "RunFailed",
    "RunFinished",
    "RunParent",
    "RunPaused",
    "RunResult",
    "Runtime",
    "RuntimeInfo",
    "RuntimeUnavailable",
    "Sampling",
    "ScriptError",
    "SecretError",
    "ServerError",
    "Step",
    "StoreError",
    "SystemMessage",
    "TextDelta",
    "ThinkingDelta",
    "Tool",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallReady",
    "ToolDefinitionError",
    "ToolExecutionError",
    "ToolOptions",
    "ToolResult",
    "ToolSpec",
    "ToolTimeoutError",
    "ToolsFinished",
    "Toolset",
    "ToolsetError",
    "TracingError",
    "UnknownToolError",
    "Usage",
    "UserMessage",
    "WorkflowFailed",
    "WorkflowSpecError",
    "redact",
    "secret",
    "tool",
]

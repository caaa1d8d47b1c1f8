"""The JSON bodies of HTTP API v1 (pydantic models: validation and the OpenAPI spec)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

__all__ = [
    "MAX_BATCH",
    "MAX_ID_LENGTH",
    "AgentInfo",
    "AgentList",
    "AgentSpec",
    "DeleteResponse",
    "ErrorResponse",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "History",
    "IntervalPage",
    "IntervalRow",
    "RegisterRequest",
    "RegisterResponse",
    "StateName",
]

MAX_BATCH = 100_000          # entries in one registration or heartbeat request
MAX_ID_LENGTH = 1024         # characters in one agent id
_MAX_UNIX = 2.0 ** 33        # the monitor's bound on Unix-second timestamps
_MAX_PRODUCT_MS = 2.0e12     # interval_ms x failure_threshold must stay inside int64 ns

# An id is any non-empty text without a newline (the UDP format and the state file separate
# ids with newlines). The newline check of a batch is one scan of the joined ids (a regex per
# id would triple the cost of validating a batch); the schema still says it.
_NO_NEWLINE = r"^[^\n]+$"
AgentId = Annotated[str, Strict(), StringConstraints(min_length=1, max_length=MAX_ID_LENGTH),
                    Field(json_schema_extra={"pattern": _NO_NEWLINE})]
Seconds = Annotated[float, Strict(), Field(ge=0, le=_MAX_UNIX, allow_inf_nan=False)]
IntervalMs = Annotated[float, Strict(), Field(ge=100, le=1e12, allow_inf_nan=False)]
Threshold = Annotated[int, Strict(), Field(ge=1, le=1_000_000)]
StateName = Literal["healthy", "degraded", "critical", "failed"]

_STRICT = ConfigDict(extra="forbid")


def _check_newlines(name: str, ids: list[str]) -> None:
    if "\n" in "".join(ids):
        i = next(i for i, agent_id in enumerate(ids) if "\n" in agent_id)
        raise ValueError(f"{name}[{i}] must not contain a newline")


class AgentSpec(BaseModel):
    """One agent to register; omitted settings take the service's defaults."""

    model_config = _STRICT
    id: AgentId
    interval_ms: IntervalMs | None = None
    failure_threshold: Threshold | None = None

    @field_validator("id")
    @classmethod
    def _no_newline(cls, value: str) -> str:
        if "\n" in value:
            raise ValueError("id must not contain a newline")
        return value

    @field_validator("failure_threshold")
    @classmethod
    def _product(cls, value: int | None, info: ValidationInfo) -> int | None:
        interval = info.data.get("interval_ms")
        if value is not None and interval is not None and interval * value > _MAX_PRODUCT_MS:
            raise ValueError(f"interval_ms x failure_threshold must be <= {_MAX_PRODUCT_MS:g}")
        return value


class RegisterRequest(BaseModel):
    model_config = _STRICT
    agents: Annotated[list[AgentSpec], Field(max_length=MAX_BATCH)]


class RegisterResponse(BaseModel):
    registered: int = Field(description="agents newly registered")
    already: int = Field(description="agents that were already monitored (left unchanged)")


class HeartbeatRequest(BaseModel):
    """A batch of heartbeats, recorded in order through the monitor's batch API."""

    model_config = _STRICT
    ids: Annotated[list[AgentId], Field(max_length=MAX_BATCH)]
    timestamps: Annotated[list[Seconds], Field(max_length=MAX_BATCH)] | None = Field(
        default=None, description="Unix seconds, one per id; default: now. A timestamp in "
                                  "the future counts as now.")

    @field_validator("ids")
    @classmethod
    def _no_newline(cls, value: list[str]) -> list[str]:
        _check_newlines("ids", value)
        return value

    @field_validator("timestamps")
    @classmethod
    def _same_length(cls, value: list[float] | None, info: ValidationInfo) -> list[float] | None:
        ids = info.data.get("ids")
        if value is not None and ids is not None and len(value) != len(ids):
            raise ValueError(f"timestamps has {len(value)} values for {len(ids)} ids")
        return value


class HeartbeatResponse(BaseModel):
    recorded: int = Field(description="heartbeats recorded")
    unknown: int = Field(description="heartbeats of ids that are not monitored")
    rejected: int = Field(0, description="heartbeats of known agents whose timestamp was "
                                         "older than the agent's last heartbeat")


class DeleteResponse(BaseModel):
    deleted: str


class AgentInfo(BaseModel):
    id: str
    state: StateName
    interval_ms: float
    failure_threshold: int
    last_heartbeat: float | None = Field(description="Unix seconds of the last heartbeat "
                                                     "received; null before the first")
    elapsed_ms: float | None = Field(description="the silence the state is judged by: since "
                                                 "the last heartbeat, the registration, or "
                                                 "the service's restart (grace)")


class AgentList(BaseModel):
    agents: list[str]
    next: str | None = Field(description="cursor of the next page; null on the last page")


class History(BaseModel):
    id: str
    timestamps: list[float] = Field(description="Unix seconds, oldest first")


class IntervalRow(BaseModel):
    """Heartbeat interval statistics of one agent, in seconds (null without intervals)."""

    id: str
    count: int
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    last: float | None


class IntervalPage(BaseModel):
    agents: list[IntervalRow]
    next: str | None


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong")
    field: str | None = Field(None, description="the request field at fault, e.g. ids[3]")

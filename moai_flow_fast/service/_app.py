"""HTTP API v1 (FastAPI): routes, the OpenAPI spec, JSON errors that name the field, and an
ASGI guard for the bearer token and the body size limit."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import os
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
from fastapi import FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._version import __version__
from ..core._rules import HealthState
from ._models import (
    AgentInfo,
    AgentList,
    DeleteResponse,
    ErrorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    History,
    IntervalPage,
    RegisterRequest,
    RegisterResponse,
    StateName,
)

if TYPE_CHECKING:
    from ._server import Service

__all__ = ["Guard", "Json", "build_app"]

logger = logging.getLogger("moai_flow_fast.service")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
_MAX_PAGE = 10_000
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "missing or wrong bearer token"},
    413: {"model": ErrorResponse, "description": "request body too large"},
    422: {"model": ErrorResponse, "description": "invalid request; `field` names the culprit"},
}
_INTERVAL_FIELDS = ("count", "mean", "std", "min", "max", "p50", "p95", "p99", "last")


class Json(Response):
    """JSON via orjson (NaN and infinities become null)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> Json:
    return Json({"error": message, "field": field, **extra}, status_code=status)


def _field_of(loc: tuple[int | str, ...]) -> str:
    """("body", "ids", 3) -> "ids[3]"; ("query", "limit") -> "limit"."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    if not parts or (len(parts) == 1 and isinstance(parts[0], int)):
        return "body"
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise _BadField("cursor", "cursor must be a value of `next` from a previous page")
    return int(cursor)


_Model = TypeVar("_Model", bound=BaseModel)


def _parse(model: type[_Model], body: bytes) -> _Model:
    """The body as `model`, whatever its Content-Type (pydantic's own JSON parser)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody of a route that parses `model` itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


class _BadField(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def build_app(service: Service) -> FastAPI:
    monitor = service.monitor
    app = FastAPI(title="moai-flow-fast", version=__version__, docs_url=None, redoc_url=None,
                  description="Heartbeat failure detection as a service: register agents, "
                              "send heartbeats, read states, follow transitions.")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Json:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_of(tuple(first.get("loc", ("body",))))
        details = [{"field": _field_of(tuple(e.get("loc", ()))), "message": str(e.get("msg"))}
                   for e in errors[:20]]
        return _error(422, f"{field}: {first.get('msg')}", field, errors=details)

    @app.exception_handler(_BadField)
    async def _bad_field(request: Request, exc: _BadField) -> Json:
        return _error(422, str(exc), exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Json:
        return _error(exc.status_code, str(exc.detail))

    # -- agents -------------------------------------------------------------------------------

    @app.post("/v1/agents", response_model=RegisterResponse, responses=_ERRORS, tags=["agents"],
              openapi_extra=_body(RegisterRequest))
    async def register(request: Request) -> Json:
        """Register agents (settings optional); agents already monitored are left as they are."""
        body = _parse(RegisterRequest, await request.body())
        try:
            registered, already = service.register(body.agents)
        except (TypeError, ValueError) as exc:
            return _error(422, str(exc), "agents")
        return Json({"registered": registered, "already": already})

    @app.delete("/v1/agents/{agent_id}", response_model=DeleteResponse,
                responses={404: {"model": ErrorResponse}, **_ERRORS}, tags=["agents"])
    async def unregister(agent_id: Annotated[str, Path(min_length=1)]) -> Json:
        """Stop monitoring an agent."""
        if not service.unregister(agent_id):
            return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
        return Json({"deleted": agent_id})

    @app.get("/v1/agents/{agent_id}", response_model=AgentInfo,
             responses={404: {"model": ErrorResponse}, **_ERRORS}, tags=["agents"])
    async def agent(agent_id: Annotated[str, Path(min_length=1)]) -> Json:
        """One agent's state, settings and silence."""
        info = service.agent_info(agent_id)
        if info is None:
            return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
        return Json(info)

    @app.get("/v1/agents", response_model=AgentList, responses=_ERRORS, tags=["agents"])
    async def agents(min_state: StateName = "degraded",
                     limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1000,
                     cursor: Annotated[str | None, Query(max_length=18)] = None) -> Json:
        """Ids of the agents at least as severe as `min_state` (healthy: all), in
        registration order, a page at a time. Pages are offsets into the current list: an
        agent changing state between two pages may be skipped or repeated."""
        start = _cursor(cursor)
        ids = monitor.get_unhealthy_agents(HealthState(min_state))
        page = ids[start:start + limit]
        nxt = str(start + limit) if start + limit < len(ids) else None
        return Json({"agents": page, "next": nxt})

    @app.get("/v1/agents/{agent_id}/history", response_model=History,
             responses={404: {"model": ErrorResponse}, **_ERRORS}, tags=["agents"])
    async def history(agent_id: Annotated[str, Path(min_length=1)]) -> Json:
        """The agent's heartbeat timestamps, oldest first."""
        if agent_id not in monitor.monitoring_agents:
            return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
        return Json({"id": agent_id, "timestamps": monitor.history_array(agent_id).tolist()})

    # -- heartbeats ---------------------------------------------------------------------------

    @app.post("/v1/heartbeats", response_model=HeartbeatResponse, responses=_ERRORS,
              tags=["heartbeats"], openapi_extra=_body(HeartbeatRequest))
    async def heartbeats(request: Request) -> Json:
        """Record a batch of heartbeats in one call of the monitor's batch API."""
        body = _parse(HeartbeatRequest, await request.body())
        recorded, unknown, rejected = service.record(body.ids, body.timestamps)
        return Json({"recorded": recorded, "unknown": unknown, "rejected": rejected})

    # -- fleet --------------------------------------------------------------------------------

    @app.get("/v1/stats", responses=_ERRORS, tags=["fleet"])
    async def stats() -> Json:
        """The monitor's `get_monitoring_stats()`, plus the service's own counters."""
        return Json(service.stats())

    @app.get("/v1/intervals", response_model=IntervalPage, responses=_ERRORS, tags=["fleet"])
    async def intervals(limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1000,
                        cursor: Annotated[str | None, Query(max_length=18)] = None) -> Json:
        """Heartbeat interval statistics (seconds) per agent, in registration order, paged."""
        start = _cursor(cursor)
        ids = monitor.get_unhealthy_agents(HealthState.HEALTHY)
        page = ids[start:start + limit]
        rows: Any = monitor.interval_stats(page) if page else []
        out = []
        for agent_id, row in zip(page, rows):
            values = row.tolist()[1:]     # drop the handle
            item: dict[str, Any] = {"id": agent_id, "count": int(values[0])}
            for name, v in zip(_INTERVAL_FIELDS[1:], values[1:]):
                item[name] = None if math.isnan(v) else v
            out.append(item)
        nxt = str(start + limit) if start + limit < len(ids) else None
        return Json({"agents": out, "next": nxt})

    @app.get("/v1/events", tags=["fleet"], response_class=Response, responses={
        200: {"content": {"text/event-stream": {}},
              "description": "server-sent events: `transition` (JSON data) and a final `end`"},
        **_ERRORS})
    async def events() -> Response:
        """Transitions and recoveries as server-sent events. A client that falls more than
        the service's per-client bound behind is ended with an `end` event saying why."""
        return SseResponse(service)

    # -- unauthenticated: health, dashboard ----------------------------------------------------

    @app.get("/healthz", tags=["service"])
    async def healthz() -> Json:
        """200 once the service is ready, 503 while it stops."""
        if not service.ready or service.stopping:
            return Json({"status": "stopping" if service.stopping else "starting"},
                        status_code=503)
        return Json({"status": "ok", "agents": len(monitor.monitoring_agents)})

    @app.get("/metrics", tags=["service"], response_class=Response,
             responses={200: {"content": {"text/plain": {}}}, **_ERRORS})
    async def metrics() -> Response:
        """Prometheus text exposition of the monitor's and the service's counters."""
        body, content_type = service.metrics()
        return Response(body, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        page = os.path.join(STATIC_DIR, "index.html")
        if not os.path.isfile(page):
            return _error(404, "the dashboard is not installed")
        return FileResponse(page, media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
    if service.cluster is not None:      # --redis: routes answering for the whole cluster
        service.cluster.install(app)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes,
                               description=app.description)
            components = spec.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for model in (RegisterRequest, HeartbeatRequest):
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            components["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer"}}
            for path, operations in spec.get("paths", {}).items():
                if path.startswith("/v1/") or path == "/metrics":
                    for operation in operations.values():
                        operation["security"] = [{"bearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class SseResponse(Response):
    """A `/v1/events` stream: frames of the client's bounded queue; a write stuck on a
    client that stopped reading is abandoned a few seconds after the client is ended."""

    def __init__(self, service: Service) -> None:
        super().__init__(status_code=200)
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = self.service.hub.subscribe(self.service.config.sse_queue)
        ended = asyncio.Event()

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            client.end("client disconnected")
            ended.set()

        watcher = asyncio.ensure_future(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"),
                (b"cache-control", b"no-store"), (b"x-accel-buffering", b"no")]})
            async for chunk in client.frames():
                if ended.is_set():
                    return
                write = asyncio.ensure_future(
                    send({"type": "http.response.body", "body": chunk, "more_body": True}))
                while not write.done():
                    await asyncio.wait({write}, timeout=1.0)
                    if client.reason is not None and not write.done():
                        # The client is ended but not reading: give the write a last chance.
                        try:
                            await asyncio.wait_for(write, 5.0)
                        except TimeoutError:
                            return
                write.result()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
        finally:
            watcher.cancel()
            self.service.hub.unsubscribe(client)


class Guard:
    """ASGI middleware: bearer token on `/v1/*` and `/metrics` (constant-time comparison),
    and the request body size limit (413 before the body is read when Content-Length says
    so, or as soon as the streamed body exceeds it)."""

    def __init__(self, app: ASGIApp, token: str | None, max_body: int) -> None:
        self.app = app
        self.expected = None if token is None else f"Bearer {token}".encode()
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.expected is not None and (path.startswith("/v1/") or path == "/metrics"):
            given = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    given = value
                    break
            if not hmac.compare_digest(given, self.expected):
                await _send(send, _error(401, "missing or wrong bearer token", "authorization"),
                            (b"www-authenticate", b'Bearer realm="moai-flow-fast"'))
                return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length > self.max_body or length < 0:
                    await _send(send, _error(413 if length > 0 else 400,
                                             f"request body too large: limit {self.max_body} bytes"
                                             if length > 0 else "invalid Content-Length",
                                             "body", limit=self.max_body))
                    return
        if scope["method"] in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        # Read the whole body here (the routes need all of it anyway), refusing it as soon
        # as it passes the limit, then hand it to the app in one message.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return                          # the client went away
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.max_body:
                await _send(send, _error(413, f"request body too large: limit {self.max_body} "
                                              "bytes", "body", limit=self.max_body))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send(send: Send, response: Json, *headers: tuple[bytes, bytes]) -> None:
    await send({"type": "http.response.start", "status": response.status_code,
                "headers": [*response.raw_headers, *headers]})
    await send({"type": "http.response.body", "body": response.body})

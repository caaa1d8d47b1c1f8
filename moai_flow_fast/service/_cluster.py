"""Cluster mode of `serve` (`--redis`): ingestion into Redis through the Shard, and one view
of the cluster (an agent is answered by its owner, lists are merged from every shard)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
from fastapi import FastAPI, Path, Query, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ..cluster import ClusterConfig, RedisUnavailable, Shard, partition_of
from ..core._rules import HealthState
from ._app import _ERRORS, _MAX_PAGE, Json, _BadField, _body, _cursor, _error, _parse
from ._models import (
    MAX_ID_LENGTH,
    AgentInfo,
    AgentSpec,
    DeleteResponse,
    ErrorResponse,
    HeartbeatRequest,
    HeartbeatResponse,
    History,
    RegisterRequest,
    RegisterResponse,
    StateName,
)

if TYPE_CHECKING:
    from ._server import Service

__all__ = ["FORWARDED_HEADER", "ClusterFront"]

logger = logging.getLogger("moai_flow_fast.service.cluster")

# Set on requests one shard makes to another: the receiver answers from its own monitor
# only (never forwards again), so a stale view of ownership cannot bounce a request around.
FORWARDED_HEADER = "x-mff-forwarded"
_FORWARD_TIMEOUT_S = 3.0
_STATUS_TIMEOUT_S = 2.0
_UNAVAILABLE: dict[int | str, dict[str, Any]] = {
    503: {"model": ErrorResponse, "description": "Redis unreachable, or no live owner"}}
_T = TypeVar("_T")


class _Unavailable(Exception):
    """Redis did not answer a call the request needs (a 503)."""


class ClusterFront:
    """The Service's side of a Shard: built in `bind()` once the HTTP address is known,
    started once the HTTP server is up, stopped before the monitor."""

    def __init__(self, service: Service) -> None:
        self.service = service
        config = service.config
        assert config.redis is not None and config.shard_name is not None
        self.name: str = config.shard_name
        self.partitions = int(config.partitions or 1)
        self.shard: Shard | None = None
        self.http_url: str | None = None
        self.client: httpx.AsyncClient | None = None
        self.forwarded = 0
        self.forward_errors = 0
        # Auto-registration: ids this shard has already registered (or found registered),
        # so a heartbeat costs a registry call only the first time its id is seen here.
        self._known: set[str] = set()
        self._auto_mu = threading.Lock()      # HTTP and UDP threads: max_agents holds

    def bind(self, http_url: str) -> None:
        config = self.service.config
        assert config.redis is not None and config.shard_name is not None
        self.http_url = http_url
        self.shard = Shard(self.service.monitor, ClusterConfig(
            url=config.redis, shard_name=config.shard_name, prefix=config.prefix or "mff",
            partitions=self.partitions, lease_ms=int(config.lease_ms or 3000),
            poll_ms=int(config.poll_ms or 100), http_url=http_url))

    async def start(self) -> None:
        self.client = httpx.AsyncClient(timeout=_FORWARD_TIMEOUT_S)
        await asyncio.to_thread(self._shard().start)

    async def stop(self) -> None:
        if self.shard is not None:
            await asyncio.to_thread(self.shard.stop)
        if self.client is not None:
            await self.client.aclose()

    def _shard(self) -> Shard:
        assert self.shard is not None, "ClusterFront.bind() was not called"
        return self.shard

    def owned(self) -> frozenset[int]:
        return frozenset() if self.shard is None else self.shard.owned

    def status(self) -> dict[str, Any]:
        if self.shard is None:
            return {"redis": "unreachable", "last_error": "not started"}
        return dict(self.shard.status())

    # -- ingestion (blocking Redis calls: the routes run them in threads, UDP in its own) ----

    def register(self, agents: Sequence[AgentSpec]) -> tuple[int, int]:
        """Into the registry in Redis; the owner of each agent's partition picks it up. The
        settings are made concrete here so that every future owner uses the same ones."""
        interval, threshold = self.service.default
        specs: list[tuple[str, int | None, int | None]] = []
        for i, a in enumerate(agents):
            if a.interval_ms is not None and not float(a.interval_ms).is_integer():
                raise _BadField(f"agents[{i}].interval_ms", "interval_ms must be a whole "
                                "number of milliseconds in cluster mode")
            specs.append((a.id, int(interval if a.interval_ms is None else a.interval_ms),
                          threshold if a.failure_threshold is None else a.failure_threshold))
        registered = self._shard().register(specs)
        self._known.update(a.id for a in agents)
        return registered, len(agents) - registered

    def unregister(self, agent_id: str) -> bool:
        self._known.discard(agent_id)
        return self._shard().unregister(agent_id)

    def record(self, ids: list[str], timestamps: Sequence[float] | None = None
               ) -> tuple[int, int, int]:
        """(sent, 0, refused): heartbeats go into their partitions' streams; which ids are
        unknown only their owners know (counted there as unknown heartbeats)."""
        service = self.service
        if service.config.auto_register:
            try:
                self._auto_register(ids)
            except RedisUnavailable:
                pass     # Redis is down: the send below fails too, and says so
        sent = self._shard().send(ids, None if timestamps is None else list(timestamps))
        return sent, 0, len(ids) - sent

    def _auto_register(self, ids: list[str]) -> None:
        known = self._known
        new = [i for i in dict.fromkeys(ids) if i not in known and len(i) <= MAX_ID_LENGTH]
        if not new:
            return
        with self._auto_mu:
            new = [i for i in new if i not in known]
            room = self.service.config.max_agents - len(known)
            if not new or room <= 0:
                return
            new = new[:room]
            interval, threshold = self.service.default
            added = self._shard().register([(i, int(interval), threshold) for i in new])
            known.update(new)
            self.service.auto_registered += added

    # -- routes -------------------------------------------------------------------------------

    def install(self, app: FastAPI) -> None:
        """Add the cluster routes and let them replace the single-node routes of the same
        path and method (Starlette takes the first match; the spec then shows these)."""
        before = list(app.router.routes)
        self._add_routes(app)
        added = app.router.routes[len(before):]
        keys = {_key(r) for r in added}
        app.router.routes[:] = [*added, *(r for r in before if _key(r) not in keys)]
        app.openapi_schema = None

        @app.exception_handler(_Unavailable)
        async def _unavailable(request: Request, exc: _Unavailable) -> Json:
            return _redis_down(str(exc))

    async def _call(self, fn: Callable[..., _T], *args: Any) -> _T:
        """`fn(*args)` in a thread (Redis must not stall the event loop); a Redis error
        becomes a 503."""
        try:
            return await asyncio.to_thread(fn, *args)
        except (RedisUnavailable, OSError) as exc:
            raise _Unavailable(str(exc) or type(exc).__name__) from None

    def _add_routes(self, app: FastAPI) -> None:
        service = self.service
        monitor = service.monitor
        errors = {**_ERRORS, **_UNAVAILABLE}
        not_found = {404: {"model": ErrorResponse}, **errors}

        @app.post("/v1/agents", response_model=RegisterResponse, responses=errors,
                  tags=["agents"], openapi_extra=_body(RegisterRequest))
        async def register(request: Request) -> Json:
            """Register agents in the cluster's registry (settings optional; the owner of
            each agent's partition monitors it)."""
            body = _parse(RegisterRequest, await request.body())
            registered, already = await self._call(self.register, body.agents)
            return Json({"registered": registered, "already": already})

        @app.delete("/v1/agents/{agent_id}", response_model=DeleteResponse,
                    responses=not_found, tags=["agents"])
        async def unregister(agent_id: Annotated[str, Path(min_length=1)]) -> Json:
            """Remove an agent from the cluster's registry."""
            if not await self._call(self.unregister, agent_id):
                return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
            return Json({"deleted": agent_id})

        @app.post("/v1/heartbeats", response_model=HeartbeatResponse, responses=errors,
                  tags=["heartbeats"], openapi_extra=_body(HeartbeatRequest))
        async def heartbeats(request: Request) -> Json:
            """Append a batch of heartbeats to the partitions' streams in Redis; `recorded`
            counts those Redis acknowledged (`unknown` is counted by the owners)."""
            body = _parse(HeartbeatRequest, await request.body())
            recorded, unknown, rejected = await self._call(self.record, body.ids,
                                                           body.timestamps)
            if recorded < len(body.ids) and self.status().get("redis") != "ok":
                # Nothing is lost silently: the sender learns that Redis did not take them.
                raise _Unavailable(str(self.status().get("last_error")))
            return Json({"recorded": recorded, "unknown": unknown, "rejected": rejected})

        @app.get("/v1/agents/{agent_id}", response_model=AgentInfo, responses=not_found,
                 tags=["agents"])
        async def agent(request: Request,
                        agent_id: Annotated[str, Path(min_length=1)]) -> Response:
            """One agent's state, answered by the shard that owns its partition."""
            def local() -> Json:
                info = service.agent_info(agent_id)
                if info is None:
                    return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
                return Json(info)
            return await self._owner(request, agent_id, local)

        @app.get("/v1/agents/{agent_id}/history", response_model=History,
                 responses=not_found, tags=["agents"])
        async def history(request: Request,
                          agent_id: Annotated[str, Path(min_length=1)]) -> Response:
            """The agent's heartbeat timestamps, answered by the owner of its partition."""
            def local() -> Json:
                if agent_id not in monitor.monitoring_agents:
                    return _error(404, f"agent {agent_id!r} is not monitored", "agent_id")
                return Json({"id": agent_id,
                             "timestamps": monitor.history_array(agent_id).tolist()})
            return await self._owner(request, agent_id, local)

        @app.get("/v1/agents", responses=errors, tags=["agents"])
        async def agents(request: Request, min_state: StateName = "degraded",
                         limit: Annotated[int, Query(ge=1, le=_MAX_PAGE)] = 1000,
                         cursor: Annotated[str | None, Query(max_length=18)] = None) -> Json:
            """Ids of the agents at least as severe as `min_state` in the whole cluster,
            grouped by partition, each in its owner's registration order, a page at a time.
            `incomplete` names the shards that did not answer (their agents are missing)."""
            start = _cursor(cursor)
            incomplete: list[str] = []
            if request.headers.get(FORWARDED_HEADER):
                ids = self._local_ids(min_state)
            else:
                ids, incomplete = await self._cluster_ids(request, min_state)
            page = ids[start:start + limit]
            nxt = str(start + limit) if start + limit < len(ids) else None
            return Json({"agents": page, "next": nxt, "incomplete": incomplete})

        @app.get("/v1/cluster", responses=errors, tags=["fleet"])
        async def cluster() -> Json:
            """The shards, their partitions, lease expiries and stream lag."""
            return Json(await self._call(self._shard().cluster))

        @app.get("/healthz", tags=["service"])
        async def healthz() -> Json:
            """200 once ready with Redis reachable; 503 while starting or stopping, or while
            Redis does not answer (`redis`: `unreachable`)."""
            if not service.ready or service.stopping:
                return Json({"status": "stopping" if service.stopping else "starting"},
                            status_code=503)
            try:
                status = await asyncio.wait_for(asyncio.to_thread(self.status),
                                                _STATUS_TIMEOUT_S)
            except TimeoutError:
                status = {"redis": "unreachable", "last_error": "status timed out"}
            up = status.get("redis") == "ok"
            return Json({"status": "ok" if up else "redis unreachable",
                         "agents": len(monitor.monitoring_agents), "shard": self.name,
                         "redis": "ok" if up else "unreachable",
                         "last_error": status.get("last_error"),
                         "partitions": sorted(self.owned())},
                        status_code=200 if up else 503)

    # -- one view of the cluster ---------------------------------------------------------------

    async def _owner(self, request: Request, agent_id: str,
                     local: Callable[[], Json]) -> Response:
        """`local()` when this shard owns the agent's partition, else the owner's answer."""
        part = partition_of(agent_id, self.partitions)
        if part in self.owned():
            return local()
        owner = None
        if not request.headers.get(FORWARDED_HEADER):
            owner = await self._call(self._shard().owner_of, agent_id)
        url = None if owner is None else owner.get("http_url")
        if owner is None or not url or owner.get("name") == self.name:
            return _retry(_error(503, f"no live owner for partition {part} of agent "
                                      f"{agent_id!r} (a takeover may be in progress: retry)",
                                 "agent_id", partition=part))
        self.forwarded += 1
        try:
            answer = await self._forward(request, str(url))
        except httpx.HTTPError as exc:
            self.forward_errors += 1
            return _error(503, f"the owner of partition {part} ({owner.get('name')} at "
                               f"{url}) did not answer: {type(exc).__name__}", "agent_id",
                          partition=part, owner=owner.get("name"))
        return Response(answer.content, status_code=answer.status_code,
                        media_type=answer.headers.get("content-type", "application/json"))

    async def _forward(self, request: Request, base: str,
                       params: dict[str, Any] | None = None) -> httpx.Response:
        assert self.client is not None
        raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
        headers = {FORWARDED_HEADER: "1"}
        auth = request.headers.get("authorization")
        if auth is not None:
            headers["authorization"] = auth      # the same token: one per cluster
        url = base.rstrip("/") + raw.decode("latin-1")
        query = params if params is not None else dict(request.query_params)
        return await self.client.get(url, params=query, headers=headers)

    def _local_ids(self, min_state: str) -> list[str]:
        """This shard's answer: only partitions it owns (a lost partition's agents may
        linger in the monitor until the shard has dropped them)."""
        owned = self.owned()
        ids = self.service.monitor.get_unhealthy_agents(HealthState(min_state))
        return [i for i in ids if partition_of(i, self.partitions) in owned]

    async def _cluster_ids(self, request: Request, min_state: str
                           ) -> tuple[list[str], list[str]]:
        view = await self._call(self._shard().cluster)
        others = [s for s in view.get("shards", [])
                  if s.get("name") != self.name and s.get("partitions")]
        answers = await asyncio.gather(*(self._remote_ids(request, s, min_state)
                                         for s in others))
        merged = list(self._local_ids(min_state))
        incomplete: list[str] = []
        for s, ids in zip(others, answers):
            if ids is None:
                incomplete.append(str(s.get("name")))
            else:
                merged.extend(ids)
        merged = list(dict.fromkeys(merged))
        # Stable: within a partition each owner's registration order is kept.
        merged.sort(key=lambda i: partition_of(i, self.partitions))
        return merged, sorted(incomplete)

    async def _remote_ids(self, request: Request, shard: dict[str, Any], min_state: str
                          ) -> list[str] | None:
        """Every page of one shard's local answer, or None if it did not answer."""
        url = shard.get("http_url")
        if not url:
            return None
        out: list[str] = []
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"min_state": min_state, "limit": _MAX_PAGE}
            if cursor is not None:
                params["cursor"] = cursor
            try:
                answer = await self._forward(request, str(url), params)
                body = answer.json() if answer.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                body = None
            if not isinstance(body, dict) or not isinstance(body.get("agents"), list):
                self.forward_errors += 1
                return None
            out.extend(str(i) for i in body["agents"])
            cursor = body.get("next")
            if cursor is None:
                return out


def _key(route: BaseRoute) -> tuple[str, frozenset[str]]:
    if isinstance(route, Route):
        return route.path, frozenset(route.methods or ())
    return "", frozenset()


def _redis_down(message: str) -> Json:
    return _retry(_error(503, f"redis unreachable: {message}", None, redis="unreachable"))


def _retry(response: Json) -> Json:
    """A 503 worth retrying soon: leases move within a second or two."""
    response.headers["retry-after"] = "1"
    return response

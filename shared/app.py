"""The app factory every service uses: lifespan, health, metrics, request ids, error format."""

import asyncio
import contextlib
import functools
import gc
import json
import logging
import signal
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared import metrics, tracing
from shared.bus import Bus
from shared.consumer import EventConsumer, Subscription, consume
from shared.db import (
    create_engine,
    create_session_factory,
    ensure_schema,
    failed_for_now,
    ping,
    session_scope,
)
from shared.errors import DomainError, InvalidInput
from shared.migrations import upgrade_to_head
from shared.outbox import NOTIFY, NOTIFY_CHANNEL
from shared.pagination import MAX_LIMIT
from shared.relay import OutboxRelay
from shared.request_context import reset_request_id, set_request_id
from shared.settings import ServiceSettings, default_consumer_group
from shared.values import NUL, NUL_REASON, where_nul

log = logging.getLogger(__name__)

# Each readiness check's bound; both run at once.
READINESS_TIMEOUT_S = 2.0


@dataclass
class ServiceSpec:
    """What makes one service: its settings, routes, migrations and subscriptions."""

    name: str
    title: str
    settings: ServiceSettings
    routers: Sequence[APIRouter]
    migrations: Path
    subscriptions: Sequence[Subscription] = field(default_factory=tuple)
    # Entries every session of the service starts with in ``Session.info`` (settings its
    # consumers' domain code needs, e.g. analytics' reporting currency).
    session_info: Mapping[str, Any] = field(default_factory=dict)


def create_service_app(spec: ServiceSpec) -> FastAPI:
    tracing.setup(spec.name)
    app = FastAPI(
        title=spec.title,
        version="1.0",
        lifespan=_lifespan(spec),
        # Our middleware makes the request's server span (shared.tracing) and Prometheus has
        # the metrics: FastAPI's own telemetry, on by default, made a second server span per
        # request plus spans for its dependencies and serialization, at a fifth of a write's CPU.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.settings = spec.settings
    app.state.service = spec.name
    for router in spec.routers:
        app.include_router(
            router, responses=ERROR_RESPONSES, dependencies=[Depends(refuse_nul_characters)]
        )
    app.include_router(_operations_router())
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=spec.settings.max_request_bytes)
    app.add_middleware(RequestContextMiddleware, service=spec.name)
    return app


async def refuse_nul_characters(request: Request) -> None:
    """A 422 naming the path or query parameter, or the place in a JSON body, that carries
    U+0000, before it reaches the database (shared.values.NUL). Like malformed JSON, it is
    refused before the token is looked at."""
    for name, value in (*request.path_params.items(), *request.query_params.multi_items()):
        if isinstance(value, str) and NUL in value:
            raise InvalidInput(NUL_REASON, field=name)
    if request.headers.get("content-type", "").startswith("application/json"):
        body = await request.body()  # read once: FastAPI keeps it for the route
        if b"\\u0000" in body:  # the only way JSON writes U+0000
            try:
                field = where_nul(json.loads(body))
            except ValueError:
                return  # malformed JSON: the route's own 422 says so
            if field is not None:
                raise InvalidInput(NUL_REASON, field=field)


# The youngest generation is collected once this many more container objects are alive than
# after the last collection. CPython's 700 dates from 2000, when far fewer types were tracked
# (python/cpython#100403): taking in a batch of 1,000 touches ran 16-30 collections, applying a
# fetched batch of 500 eight, 4-6 us of CPU per touch in each of the API and the consumers.
# At 50,000 none runs within a batch, and garbage in cycles waits for at most a few
# megabytes of objects before it is freed.
GC_YOUNG_THRESHOLD = 50_000


@functools.cache  # once per process (tests start many apps in one)
def _tune_garbage_collector() -> None:
    """What exists once a service has started (modules, mappers, schemas, the app) lives as
    long as the process: kept out of the garbage collector's full collections, which otherwise
    scan it again and again (12 % of analytics' consumer time in-process, 3 % after). Then
    the youngest generation collected less often (``GC_YOUNG_THRESHOLD``)."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


def _lifespan(spec: ServiceSpec) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings = spec.settings
        engine = create_engine(
            settings.database_url,
            settings.database_schema,
            pool_size=settings.database_pool_size,
            max_overflow=settings.database_max_overflow,
        )
        await migrate(engine, settings, spec.migrations)
        bus = Bus(settings.kafka, client_id=f"crm-{spec.name}")
        session_factory = create_session_factory(engine)
        tasks: list[asyncio.Task[None]] = []
        relay = OutboxRelay(
            service=spec.name,
            session_factory=session_factory,
            bus=bus,
            batch_size=settings.relay_batch_size,
            poll_interval_s=settings.relay_poll_interval_s,
            lease_s=settings.relay_lease_s,
            retention=timedelta(seconds=settings.relay_retention_s),
            notify_channel=f"crm_outbox_{spec.name}_{settings.database_schema or 'public'}"[:63],
        )
        session_factory.configure(
            info={
                **spec.session_info,
                NOTIFY: relay.wake,
                NOTIFY_CHANNEL: relay.notify_channel,
            }
        )
        group = settings.consumer_group or default_consumer_group(spec.name)
        consumers = [
            EventConsumer(
                service=spec.name,
                subscription=subscription,
                session_factory=session_factory,
                kafka=settings.kafka,
                bus=bus,
                group_id=group,
                max_attempts=settings.consumer_max_attempts,
                batch_size=settings.consumer_batch_size,
            )
            for subscription in spec.subscriptions
        ]
        if settings.run_relay:
            tasks.append(asyncio.create_task(relay.run(), name=f"{spec.name}.relay"))
        if settings.run_consumers and consumers:
            # One group and one fetch loop for all the service's subscriptions; each applies
            # its records at its own pace (shared.consumer.consume).
            tasks.append(
                asyncio.create_task(
                    consume(
                        settings.kafka,
                        group_id=group,
                        consumers=consumers,
                        client_id=group,
                        dedupe_retention=timedelta(seconds=settings.consumer_dedupe_retention_s),
                    ),
                    name=f"{spec.name}.consumer",
                )
            )
        for task in tasks:
            task.add_done_callback(lambda ended: _report_if_ended_early(app, ended))
        app.state.workers = tasks
        app.state.stopping = False
        app.state.engine = engine
        app.state.session_factory = session_factory
        app.state.bus = bus
        app.state.relay = relay
        app.state.consumers = consumers
        _tune_garbage_collector()
        log.info("service started", extra={"port": settings.port})
        try:
            yield
        finally:
            app.state.stopping = True
            # Cancel until every task has ended: aiokafka's close() can swallow a cancellation.
            pending = set(tasks)
            for _ in range(10):
                if not pending:
                    break
                for task in pending:
                    task.cancel()
                _, pending = await asyncio.wait(pending, timeout=1)
            if pending:
                log.warning(
                    "tasks still running at shutdown",
                    extra={"tasks": [task.get_name() for task in pending]},
                )
            with contextlib.suppress(Exception):
                await asyncio.wait_for(relay.release_lease(), 5)
            await bus.close()  # bounded: a sick broker must not hold up the shutdown
            await engine.dispose()
            log.info("service stopped")

    return lifespan


def _report_if_ended_early(app: FastAPI, task: asyncio.Task[None]) -> None:
    # The relay and the consumer loop retry every error themselves and run until shutdown:
    # one that ends before it (a cancellation raised out of a library, say) leaves the API
    # accepting writes that nothing publishes or applies. /healthz then fails, so that the
    # orchestrator restarts the process; with ``exit_when_a_worker_ends`` the process ends
    # itself (a graceful stop, as on Ctrl-C) for its supervisor to start it anew.
    if not app.state.stopping:
        error = None if task.cancelled() else task.exception()
        log.error(
            "a background task ended before shutdown",
            extra={"task": task.get_name()},
            exc_info=error,
        )
        if app.state.settings.exit_when_a_worker_ends:
            WORKER_ENDED.set()
            log.error("stopping the process, for its supervisor to start it again")
            # SIGINT, not SIGTERM: uvicorn stops gracefully on either, then raises it again
            # with the handler it found; SIGINT's is Python's KeyboardInterrupt, which `crm
            # serve` turns into exit status 1, where SIGTERM's would kill the process.
            signal.raise_signal(signal.SIGINT)


# Set when a worker ended before shutdown: `crm serve` then exits with status 1.
WORKER_ENDED = threading.Event()


async def migrate(engine: AsyncEngine, settings: ServiceSettings, migrations: Path) -> None:
    """Create the service's schema if needed and apply its Alembic migrations."""
    await ensure_schema(engine, settings.database_schema)
    await upgrade_to_head(engine, migrations)


# ---- request dependencies -------------------------------------------------------------------


async def _session(request: Request) -> AsyncIterator[AsyncSession]:
    async for session in session_scope(request.app.state.session_factory):
        yield session


# scope="function": the commit happens before the response is sent, so a 201 means committed.
SessionDep = Annotated[AsyncSession, Depends(_session, scope="function")]
# A list's page size and the cursor of its next page, the same bounds on every list endpoint.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=500)]


# ---- health and metrics ---------------------------------------------------------------------


async def _readiness_check(name: str, check: Awaitable[None]) -> str:
    # The endpoint is open: it names the kind of failure, and the log has the detail
    # (the error's text names hosts, ports and the database user).
    try:
        await asyncio.wait_for(check, READINESS_TIMEOUT_S)
        return "ok"
    except Exception as exc:
        log.warning(f"readiness: the {name} is unavailable", exc_info=True)
        return f"unavailable: {type(exc).__name__}"


def _operations_router() -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz(request: Request) -> JSONResponse:
        ended = sorted(task.get_name() for task in request.app.state.workers if task.done())
        if ended:
            return JSONResponse({"status": "failing", "ended": ended}, status_code=503)
        return JSONResponse({"status": "ok"})

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        # Both at once, each bounded: the answer comes within the probe's timeout (4 s in
        # deploy/k8s) even when both are down, as a 503 naming both instead of a timeout.
        database, broker = await asyncio.gather(
            _readiness_check("database", ping(request.app.state.engine)),
            _readiness_check("broker", request.app.state.bus.ping()),
        )
        checks = {"database": database, "broker": broker}
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=PlainTextResponse)
    async def prometheus_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


# ---- one error format for every 4xx ---------------------------------------------------------


class FieldError(BaseModel):
    field: str
    reason: str


class ErrorDetail(BaseModel):
    # Some errors add keys of their own, e.g. a 409's ``existing_id`` or a 301's ``merged_into``.
    model_config = ConfigDict(extra="allow")

    status: int
    code: str
    message: str
    fields: list[FieldError]


class ErrorResponse(BaseModel):
    """The body of every error answer (``error_body``)."""

    error: ErrorDetail


# Documented on every API route, in place of FastAPI's own 422 body, which this API never sends.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": ErrorResponse,
        "description": "the request was refused: 401 without a valid token, 403 without the "
        "scope, 404, 409, or 422 naming each bad field and the reason",
    },
    503: {
        "model": ErrorResponse,
        "description": "the database could not be reached or was busy (database_unavailable):"
        " try again after Retry-After",
    },
}
# The same for a route whose own answers are not JSON (a page): the model would be documented
# under the page's media type, so the JSON error body is named outright.
ERROR_RESPONSES_OF_A_PAGE: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "description": ERROR_RESPONSES["4XX"]["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    },
    503: {
        "description": ERROR_RESPONSES[503]["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    },
}


def error_body(
    status: int,
    code: str,
    message: str,
    fields: list[dict[str, str]] | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``details`` (e.g. ``existing_id``) never replace the four standard keys."""
    standard = {"status": status, "code": code, "message": message, "fields": fields or []}
    return {"error": {**(details or {}), **standard}}


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [_field_error(error) for error in exc.errors()]
        summary = "; ".join(f"{f['field']}: {f['reason']}" for f in fields)
        return JSONResponse(error_body(422, "invalid_input", summary, fields), status_code=422)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        fields = [{"field": exc.field, "reason": exc.message}] if exc.field else []
        headers = {}
        if "location" in exc.details:
            headers["Location"] = str(exc.details["location"])
        return JSONResponse(
            error_body(exc.status, exc.code, exc.message, fields, exc.details),
            status_code=exc.status,
            headers=headers,
        )

    @app.exception_handler(DBAPIError)
    async def database_error(_: Request, exc: DBAPIError) -> JSONResponse:
        if not failed_for_now(exc):
            raise exc  # a bug: the 500 it always was, logged with its traceback
        log.warning("database unavailable: %s", exc.orig)
        message = "the database could not be reached or was busy: try again"
        return JSONResponse(
            error_body(503, "database_unavailable", message),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            400: "invalid_input",
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            413: "too_large",
        }.get(exc.status_code, "error")
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            headers = {**(headers or {}), **_allow_header(request)}
        # FastAPI's only 400: a body its JSON reader gave up on (nested thousands deep, say);
        # a 413, one larger than the limit (BodyLimitMiddleware).
        about_the_body = exc.status_code in (400, 413)
        fields = [{"field": "body", "reason": str(exc.detail)}] if about_the_body else []
        return JSONResponse(
            error_body(exc.status_code, code, str(exc.detail), fields),
            status_code=exc.status_code,
            headers=headers,
        )


_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def _allow_header(request: Request) -> dict[str, str]:
    """Every method the resource answers, as its OpenAPI document lists them: the router names
    only those of the first route matching the path (a GET and a POST on one path are two)."""
    path = getattr(request.scope.get("route"), "path_format", None)
    documented = request.app.openapi()["paths"].get(path, {}) if path else {}
    methods = sorted(method.upper() for method in documented if method in _METHODS)
    return {"Allow": ", ".join(methods)} if methods else {}


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    location = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "json_invalid":
        return {
            "field": "body",
            "reason": f"malformed JSON: {error.get('ctx', {}).get('error', '')}".strip(),
        }
    if location and location[0] in ("body", "query", "path", "header"):
        location = location[1:]
    # A validator's own ValueError reads as its message alone, without pydantic's "Value error, ".
    reason = error.get("msg", "invalid").removeprefix("Value error, ")
    if location[-1:] == ["[key]"]:  # a key of a mapping was refused: name the mapping
        *location, key, _ = location
        reason = f"key {key!r}: {reason}"
    return {"field": ".".join(location) or "body", "reason": reason}


# ---- request ids, access metrics ------------------------------------------------------------


class RequestContextMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware overhead): request id in, latency metric out."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        incoming = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in scope.get("headers", [])
            if k in (b"traceparent", b"tracestate")
        }

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            with tracing.server_span(scope["method"], incoming) as span:
                try:
                    await self.app(scope, receive, send_with_id)
                finally:
                    route = getattr(scope.get("route"), "path", None)
                    if route:  # the template, not the path: span names stay few
                        span.update_name(f"{scope['method']} {route}")
                    span.set_attribute("http.response.status_code", status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            metrics.REQUEST_LATENCY.labels(
                self.service, scope["method"], path, str(status)
            ).observe(time.perf_counter() - started)
            reset_request_id(token)


class BodyLimitMiddleware:
    """A request body larger than ``max_bytes`` is a 413 naming ``body``: refused unread when
    its Content-Length says so, else as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reason = f"a request body is at most {max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            fields = [{"field": "body", "reason": self.reason}]
            refusal = JSONResponse(error_body(413, "too_large", self.reason, fields), 413)
            await refusal(scope, receive, send)
            return
        read = 0

        async def receive_within_limit() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self.max_bytes:
                # An HTTPException, which FastAPI's body reading lets through as it is.
                raise StarletteHTTPException(413, self.reason)
            return message

        await self.app(scope, receive_within_limit, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")[:128]
    return None

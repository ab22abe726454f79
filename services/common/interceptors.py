"""The server interceptor: tracing, authentication, authorization, metrics, error mapping,
access log.

Written by hand because no maintained library covers grpc.aio for these:
py-grpc-prometheus supports the synchronous server only, and OpenTelemetry's contrib
server interceptor, used here before, cost more than our whole guard (see _ServerSpan).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, get_global_textmap
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import Status, StatusCode

from privacam_core.identity import IdentityRejected, Principal, principal_from_pem
from services.common import metrics, telemetry
from services.common.auth import Authorizer, reset_current_principal, set_current_principal
from services.common.errors import (
    PrivacamError,
    Unauthenticated,
    report_store_refusal,
    status_for,
    store_unreachable,
)
from services.common.ratelimit import Limit, RateLimiter

log = logging.getLogger("privacam.rpc")

# Served on every port without a policy: they reveal nothing about any tenant.
EXEMPT_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _split(method: str) -> tuple[str, str]:
    service, _, name = method.lstrip("/").partition("/")
    return service, name


def _behavior(handler: grpc.RpcMethodHandler[Any, Any]) -> Any:
    """The one behaviour a method handler carries, whatever its streaming shape."""
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


def _rewrapped(
    handler: grpc.RpcMethodHandler[Any, Any], behavior: Any
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape and (de)serializers running `behavior` instead."""
    factory: Callable[..., grpc.RpcMethodHandler[Any, Any]] = {
        "unary": grpc.unary_unary_rpc_method_handler,
        "client_stream": grpc.stream_unary_rpc_method_handler,
        "server_stream": grpc.unary_stream_rpc_method_handler,
        "bidi_stream": grpc.stream_stream_rpc_method_handler,
    }[_rpc_type(handler)]
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    if handler.response_streaming:
        return "server_stream"
    return "unary"


class _Method:
    """What is fixed per RPC method: its names, metric series and span, made once."""

    def __init__(self, full_method: str, rpc_type: str, span: _ServerSpan) -> None:
        self.full_method = full_method
        self.service, self.name = span.service, span.method
        self.rpc_type = rpc_type
        self.span = span
        self.series = metrics.GRPC_SERVER.series(self.service, self.name, rpc_type)


def _peer_address(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    """The caller's IP address without the port ("ipv4:1.2.3.4:5678" -> "1.2.3.4")."""
    peer = context.peer()
    _, _, address = peer.partition(":")
    return address.rsplit(":", 1)[0].strip("[]") or peer


@dataclass(frozen=True)
class AnonymousMethods:
    """Methods served without a client certificate (only on a server-TLS port), each
    with a rate limit per source address."""

    limits: Mapping[str, Limit] = field(default_factory=dict)
    limiter: RateLimiter | None = None


class TrackedCall:
    """One open call that a revocation of its caller must end.

    The call runs in its own task (gRPC's); a revocation cancels that task if it is waiting
    on the handler, or marks the call so that it ends at its next step if it is elsewhere
    (sending a response). This costs nothing per message: an earlier version raced two new
    tasks against each other for every message of every stream."""

    __slots__ = ("_task", "_waiting", "revoked")

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._waiting = False
        self.revoked = False

    def revoke(self) -> None:
        if self.revoked:
            return
        self.revoked = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    async def run(self, work: Awaitable[Any], context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        """The result of `work`, or the call ends UNAUTHENTICATED if the caller is revoked
        first. A client that goes away still cancels `work` (its cleanup runs)."""
        if self.revoked:
            if asyncio.iscoroutine(work):
                work.close()
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "certificate has been revoked")
        self._waiting = True
        try:
            result = await work
        except asyncio.CancelledError:
            if not self.revoked:
                raise  # the client went away
        finally:
            self._waiting = False
        if self.revoked:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                task.uncancel()  # our own cancellation, now handled
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "certificate has been revoked; the call is closed"
            )
        return result


class OpenCalls:
    """Streaming calls in progress and who made them, so a revocation can end them."""

    def __init__(self) -> None:
        self._calls: dict[TrackedCall, Principal] = {}

    def add(self, principal: Principal) -> TrackedCall:
        """Register the current task's call, ended when the caller's identity is revoked."""
        call = TrackedCall()
        self._calls[call] = principal
        return call

    def remove(self, call: TrackedCall | None) -> None:
        if call is not None:
            self._calls.pop(call, None)

    def close(self, is_revoked: Callable[[Principal], bool]) -> int:
        """End every open call of a principal the predicate matches; how many."""
        doomed = [call for call, principal in self._calls.items() if is_revoked(principal)]
        for call in doomed:
            call.revoke()
        if doomed:
            log.info("calls of a revoked identity closed", extra={"calls": len(doomed)})
        return len(doomed)

    def __len__(self) -> int:
        return len(self._calls)


_END = object()


async def _next(iterator: AsyncIterator[Any]) -> Any:
    try:
        return await iterator.__anext__()
    except StopAsyncIteration:
        return _END


class _Guard:
    """Around every handler: who calls, may they, and what status, span and metrics result.

    Its steps are plain methods called from one try/except/finally in the wrapped handler,
    not an async context manager: this runs on every call, and the certificate path, most
    calls, then makes no coroutine of its own."""

    __slots__ = (
        "_code",
        "_context",
        "_error",
        "_interceptor",
        "_principal",
        "_rpc",
        "_span",
        "_started",
        "_token",
        "_track",
        "_tracked",
    )

    def __init__(
        self,
        interceptor: ServerInterceptor,
        rpc: _Method,
        context: grpc.aio.ServicerContext[Any, Any],
        track: bool,
    ) -> None:
        self._interceptor = interceptor
        self._rpc = rpc
        self._context = context
        self._track = track
        self._started = time.perf_counter()
        rpc.series.started += 1
        self._code = grpc.StatusCode.OK
        self._error: BaseException | None = None
        self._principal: Principal | None = None
        self._token: contextvars.Token[Principal] | None = None
        self._tracked: TrackedCall | None = None
        self._span = rpc.span.begin(context)

    def admit_certified(self) -> None:
        """Authenticate the caller by its client certificate and authorize the method."""
        interceptor = self._interceptor
        pem = next(iter(self._context.auth_context().get("x509_pem_cert", ())), None)
        if pem is None:
            raise Unauthenticated("a client certificate is required")
        try:
            principal = principal_from_pem(pem, interceptor.trust_domain)
        except IdentityRejected as error:
            raise Unauthenticated(str(error)) from None
        interceptor.authorizer.authorize(principal, self._rpc.full_method)
        self._principal = principal
        self._token = set_current_principal(principal)
        if self._track:
            self._tracked = interceptor.calls.add(principal)

    async def admit_anonymous(self) -> None:
        """No identity yet (this is how one is obtained): only the rate limit applies."""
        rpc, anonymous = self._rpc, self._interceptor.anonymous
        if anonymous.limiter is not None:
            await anonymous.limiter.check(
                rpc.name, _peer_address(self._context), anonymous.limits[rpc.full_method]
            )

    async def run(self, work: Awaitable[Any]) -> Any:
        """`work`'s result; for a tracked call, unless the caller is revoked first."""
        if self._tracked is None:
            return await work
        return await self._tracked.run(work, self._context)

    async def failed(self, error: BaseException) -> None:
        """Note how the call failed; an error of ours becomes its status (AbortError)."""
        self._error = error
        if isinstance(error, asyncio.CancelledError):
            self._code = grpc.StatusCode.CANCELLED  # the client went away
        elif isinstance(error, grpc.aio.AbortError):
            self._code = self._context.code() or grpc.StatusCode.UNKNOWN
        elif isinstance(error, Exception):
            self._code = status_for(error)[0]
            await self._fail(error)  # raises AbortError

    def close(self) -> None:
        """The call is over: forget the caller, count it, end its span."""
        try:
            if self._token is not None:
                reset_current_principal(self._token)
                self._token = None
            if self._tracked is not None:
                self._interceptor.calls.remove(self._tracked)
            self._finish(self._code)
        finally:
            self._rpc.span.end(self._span, self._code, self._error)

    def _finish(self, code: grpc.StatusCode) -> None:
        elapsed = time.perf_counter() - self._started
        rpc = self._rpc
        rpc.series.finished(code.name, elapsed)
        # One line per failed call (successes are counted by the metrics above; a line for
        # each of them cost more than the call itself). Only the kind of caller: ids of
        # people and devices never go to logs.
        level = logging.DEBUG if code is grpc.StatusCode.OK else logging.INFO
        if not log.isEnabledFor(level):
            return
        principal = self._principal
        log.log(
            level,
            "rpc",
            extra={
                "rpc_method": rpc.full_method,
                "grpc_code": code.name,
                "duration_ms": round(elapsed * 1000, 3),
                "principal_kind": principal.kind.value if principal else None,
            },
        )

    async def _fail(self, error: BaseException) -> None:
        code, message = status_for(error)
        if isinstance(error, PrivacamError) and code in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
        ):
            reason = "unauthenticated" if code is grpc.StatusCode.UNAUTHENTICATED else "forbidden"
            metrics.AUTH_REJECTED.labels(self._rpc.service, reason).inc()
        if report_store_refusal(error, rpc_method=self._rpc.full_method):
            pass  # INTERNAL, logged for operators without the store's reply
        elif code is grpc.StatusCode.INTERNAL:
            log.error("unhandled error in %s", self._rpc.full_method, exc_info=error)
        elif store_unreachable(error):
            # The error's own text names hosts: its class is enough to find the store.
            log.warning(
                "a store is unreachable",
                extra={"rpc_method": self._rpc.full_method, "error": type(error).__name__},
            )
        await self._context.abort(code, message)


class LoadShedder:
    """At most `limit` short calls (unary and client-streaming) in progress per process;
    beyond that a call is refused at once with UNAVAILABLE, which clients retry with
    jittered backoff. Refusing early keeps latency bounded for the calls admitted when a
    fleet reconnects at once; long-lived streams (camera control channels) are not counted,
    or an idle fleet would use up the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0

    def admit(self, service: str) -> bool:
        if self.in_flight >= self.limit:
            metrics.SHED.labels(service).inc()
            return False
        self.in_flight += 1
        return True

    def done(self) -> None:
        self.in_flight -= 1


_OVERLOADED = "the service is busy; retry with backoff"


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(
        self,
        authorizer: Authorizer,
        trust_domain: str,
        calls: OpenCalls | None = None,
        anonymous: AnonymousMethods | None = None,
        shedder: LoadShedder | None = None,
    ) -> None:
        self.authorizer = authorizer
        self.trust_domain = trust_domain
        self._tracer = trace.get_tracer("privacam.grpc.server")
        self._trace_headers = frozenset(get_global_textmap().fields)
        self._unrecorded_roots = telemetry.unrecorded_roots()
        self.anonymous = anonymous or AnonymousMethods()
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
        self.calls = calls if calls is not None else OpenCalls()
        self.shedder = shedder

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped  # handlers are registered once: wrap each method once
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(EXEMPT_PREFIXES):
            return handler
        rpc_type = _rpc_type(handler)
        span = _ServerSpan(self._tracer, method, self._trace_headers, self._unrecorded_roots)
        rpc = _Method(method, rpc_type, span)
        inner = _behavior(handler)
        if handler.response_streaming:
            wrapped = _rewrapped(handler, self._streaming(rpc, inner))
        else:
            wrapped = _rewrapped(handler, self._unary(rpc, inner))
        self._wrapped[method] = wrapped
        return wrapped

    def _unary(self, rpc: _Method, inner: Any) -> Any:
        # A unary call is short and ends on its own: it is not tracked for revocation.
        track = rpc.rpc_type != "unary"
        anonymous = rpc.full_method in self.anonymous.limits
        shedder = self.shedder

        async def guarded(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if shedder is not None and not shedder.admit(rpc.service):
                rpc.series.refused(grpc.StatusCode.UNAVAILABLE.name)
                await context.abort(grpc.StatusCode.UNAVAILABLE, _OVERLOADED)
            guard = _Guard(self, rpc, context, track)
            try:
                if anonymous:
                    await guard.admit_anonymous()
                else:
                    guard.admit_certified()
                if not track:
                    return await inner(request, context)
                return await guard.run(inner(request, context))
            except BaseException as error:
                await guard.failed(error)
                raise
            finally:
                guard.close()
                if shedder is not None:
                    shedder.done()

        return guarded

    def _streaming(self, rpc: _Method, inner: Any) -> Any:
        anonymous = rpc.full_method in self.anonymous.limits

        async def behavior(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            guard = _Guard(self, rpc, context, track=True)
            try:
                if anonymous:
                    await guard.admit_anonymous()
                else:
                    guard.admit_certified()
                responses = inner(request, context).__aiter__()
                while (response := await guard.run(_next(responses))) is not _END:
                    yield response
            except BaseException as error:
                await guard.failed(error)
                raise
            finally:
                guard.close()

        return behavior


_Carrier = Sequence[tuple[str, Any]]


class _MetadataGetter(Getter[_Carrier]):
    """Reads W3C trace headers from gRPC invocation metadata (binary values are skipped)."""

    def get(self, carrier: _Carrier, key: str) -> list[str] | None:
        values = [value for name, value in carrier if name == key and isinstance(value, str)]
        return values or None

    def keys(self, carrier: _Carrier) -> list[str]:
        return [name for name, _ in carrier]


_METADATA = _MetadataGetter()

# Codes that are the server's failure, not the caller's (OpenTelemetry's gRPC conventions).
_SERVER_FAULTS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


class _UnrecordedSpan(trace.NonRecordingSpan):
    """The span the SDK would make for a call it does not record, with its ids made when
    first read: most calls neither log nor call onwards, so most never need them."""

    def __init__(self, ids: IdGenerator, caller: trace.SpanContext) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self._ids: IdGenerator | None = ids
        self._caller = caller

    def get_span_context(self) -> trace.SpanContext:
        ids = self._ids
        if ids is not None:  # the first read
            self._ids = None
            caller = self._caller
            self._context = trace.SpanContext(
                caller.trace_id if caller.is_valid else ids.generate_trace_id(),
                ids.generate_span_id(),
                False,
                caller.trace_flags,
                caller.trace_state,
            )
        return self._context


class _ServerSpan:
    """A SERVER span per call of one method, continuing the caller's trace from the W3C
    headers in its metadata, named and attributed as OpenTelemetry's conventions for gRPC
    say (health checks and reflection are not traced).

    Made with the OpenTelemetry API rather than the contrib package's aio server interceptor
    (its client interceptors are used as they are): that one cost about 70 µs a call, a
    quarter of a small RPC's server time (benchmarks/bench_device_auth.py), because it reads
    the metadata and the peer twice and builds attributes for every call, recorded or not,
    and wraps every call's context in a proxy and its handler anew. Here a method's
    attributes are made once, the peer is read only for a recorded span, and the status
    comes from the guard, which knows it.
    """

    def __init__(
        self,
        tracer: trace.Tracer,
        full_method: str,
        trace_headers: frozenset[str],
        unrecorded_roots: IdGenerator | None,
    ) -> None:
        self._tracer = tracer
        self._name = full_method
        self.service, self.method = _split(full_method)
        self._attributes = {
            "rpc.system": "grpc",
            "rpc.service": self.service,
            "rpc.method": self.method,
        }
        self._trace_headers = trace_headers
        self._unrecorded_roots = unrecorded_roots

    def begin(self, context: grpc.aio.ServicerContext[Any, Any]) -> tuple[trace.Span, object]:
        metadata = context.invocation_metadata()
        parent = None
        if metadata and any(name in self._trace_headers for name, _ in metadata):
            parent = extract(cast(_Carrier, metadata), getter=_METADATA)
        ids = self._unrecorded_roots
        if ids is not None:
            # Only a sampled caller's trace is recorded (ParentBased(ALWAYS_OFF)): any other
            # call gets the span the SDK would make, from ids alone. Every call from our own
            # clients brings an unsampled trace, so this is most calls.
            caller = trace.get_current_span(parent).get_span_context()
            if not caller.trace_flags.sampled:
                unrecorded = _UnrecordedSpan(ids, caller)
                return unrecorded, otel_context.attach(
                    trace.set_span_in_context(unrecorded, parent)
                )
        span = self._tracer.start_span(
            self._name, context=parent, kind=trace.SpanKind.SERVER, attributes=self._attributes
        )
        if span.is_recording():
            address, _, port = context.peer().partition(":")[2].rpartition(":")
            span.set_attributes({"net.peer.ip": address.strip("[]"), "net.peer.port": port})
        return span, otel_context.attach(trace.set_span_in_context(span, parent))

    @staticmethod
    def end(
        began: tuple[trace.Span, object], code: grpc.StatusCode, error: BaseException | None
    ) -> None:
        span, token = began
        try:
            if span.is_recording():
                span.set_attribute("rpc.grpc.status_code", code.value[0])
                if code in _SERVER_FAULTS:
                    span.set_status(Status(StatusCode.ERROR, code.name))
                    if error is not None and not isinstance(error, grpc.aio.AbortError):
                        span.record_exception(error)
            span.end()
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]

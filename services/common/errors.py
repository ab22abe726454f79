"""Domain errors and the one table that maps them to gRPC status codes.

Domain code raises these; the server interceptor turns them into statuses, so
servicer bodies carry no try/except. Messages are for people: say what was
wrong and how to fix it, and never name another tenant's resource.
"""

from __future__ import annotations

import logging
import re

import grpc
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    OutOfOrderSequenceNumber,
    TopicAuthorizationFailedError,
)
from minio.error import S3Error
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoPermissionError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from urllib3.exceptions import MaxRetryError

from services.common import metrics

log = logging.getLogger("privacam.stores")


class PrivacamError(Exception):
    """Base of every error a caller may see; its message is shown to the caller."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL


class InvalidArgument(PrivacamError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(PrivacamError):
    """Also raised for another tenant's resource, so existence never leaks."""

    status = grpc.StatusCode.NOT_FOUND


class AlreadyExists(PrivacamError):
    status = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(PrivacamError):
    status = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PrivacamError):
    status = grpc.StatusCode.PERMISSION_DENIED


class FailedPrecondition(PrivacamError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(PrivacamError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(PrivacamError):
    status = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(PrivacamError):
    """A dependency is down; the caller may retry with backoff."""

    status = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PrivacamError):
    """The caller was too slow: a stream that stalled past the server's idle limit."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED


class Aborted(PrivacamError):
    """A concurrent change won; the caller may retry the whole operation."""

    status = grpc.StatusCode.ABORTED


_DOMAIN_STATUS: dict[type[BaseException], grpc.StatusCode] = {}
# A client library's word for "its server cannot be reached right now" (down, restarting,
# too slow): the call fails UNAVAILABLE, which callers retry with backoff (the SDK and the
# services' own clients do), not INTERNAL, which says the call can never work. The message
# is fixed: the libraries' own name hosts and ports.
_UNREACHABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    KafkaConnectionError,
    KafkaTimeoutError,
    # A broker restarted without our producer's state: the producer is renewed
    # (services.common.kafka.EventProducer), and the retry goes through.
    OutOfOrderSequenceNumber,
    MaxRetryError,  # MinIO's client (urllib3) once its own retries are spent
)
UNREACHABLE_MESSAGE = "a store this service needs cannot be reached right now; retry with backoff"


def map_domain_error(error_type: type[BaseException], status: grpc.StatusCode) -> None:
    """Let a service's pure domain errors (no gRPC imports) become a status; their
    message is shown to the caller, so it must say nothing of another tenant."""
    _DOMAIN_STATUS[error_type] = status


def store_unreachable(error: BaseException) -> bool:
    """True for a Redis, Kafka or MinIO client saying its server cannot be reached now;
    for Kafka also any error its client marks retriable (a partition with no leader while
    a broker restarts, a leader that moved): the call works once the cluster settles."""
    return isinstance(error, _UNREACHABLE) or (
        isinstance(error, KafkaError) and bool(error.retriable)
    )


_REFUSED_COMMAND = re.compile(r"no permissions to run the '([a-z|-]{1,64})' command")
_SCRIPT_REFUSAL = "The user executing the script can't"


def store_refusal(error: BaseException) -> str | None:
    """What Redis refused this service's user, as a class that names no key or value:
    `command <name>`, `key` or `channel` (`... in a script` when a script's call was the
    one refused); None when the error is not a refusal. Redis answers NOPERM
    (NoPermissionError) for a command sent directly; for a call inside a Lua script,
    Redis 7.0 answers a plain ERR saying "The user executing the script can't ..."."""
    text = str(error)
    if isinstance(error, NoPermissionError):
        where = ""
    elif isinstance(error, ResponseError) and _SCRIPT_REFUSAL in text:
        where = " in a script"
    else:
        return None
    command = _REFUSED_COMMAND.search(text)
    if command is not None:
        return f"command {command.group(1)}{where}"
    if "channel" in text:
        return f"channel{where}"
    if "key" in text:
        return f"key{where}"
    return f"command{where}"


_S3_REFUSALS = frozenset({"AccessDenied", "AllAccessDisabled", "InvalidAccessKeyId"})


def object_store_refusal(error: BaseException) -> str | None:
    """The S3 error code when MinIO refused this service's user (its policy lacks the
    action, or the key is not its own), else None. The error's resource and message name
    the object, whose path holds tenant and camera ids: only the code leaves here."""
    if isinstance(error, S3Error) and error.code in _S3_REFUSALS:
        return error.code
    return None


_KAFKA_REFUSALS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
)


def stream_refusal(error: BaseException) -> str | None:
    """Kafka's authorization error class when the brokers refused this service's user (an
    ACL of stack/kafka_users.py is missing), else None. Only the class leaves here: the
    error's text names topics and groups, never records, but stays out of logs anyway."""
    if isinstance(error, _KAFKA_REFUSALS):
        return type(error).__name__
    return None


def report_store_refusal(error: BaseException, **context: str) -> bool:
    """Log and count a refusal by Redis, MinIO or Kafka (False if `error` is none): the caller gets
    INTERNAL (status_for), because a refusal means our own ACL, policy or code is wrong, not
    the call. The log line is for operators: the command class or S3 code, never a key, an
    object name, a value or the reply."""
    refused = store_refusal(error)
    if refused is not None:
        store, fix = "redis", "its ACL lacks a right the code uses (see stack/redis_acl.py)"
    elif (refused := object_store_refusal(error)) is not None:
        store, fix = "minio", "its policy lacks an action the code uses (see stack/minio_users.py)"
    elif (refused := stream_refusal(error)) is not None:
        store, fix = "kafka", "its ACLs lack a right the code uses (see stack/kafka_users.py)"
    else:
        return False
    metrics.STORE_REFUSALS.labels(store).inc()
    name = {"redis": "Redis", "minio": "MinIO", "kafka": "Kafka"}[store]
    log.error(
        f"{name} refused a request of this service's user: {fix}",
        extra={**context, "store": store, "refused": refused},
    )
    return True


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message a caller sees for an exception raised by a handler."""
    if isinstance(error, PrivacamError):
        return error.status, str(error) or error.status.name.lower().replace("_", " ")
    if isinstance(error, NotImplementedError):
        # The generated servicer base raises this for RPCs not built yet.
        return grpc.StatusCode.UNIMPLEMENTED, "this RPC is declared but not implemented yet"
    if store_unreachable(error):
        return grpc.StatusCode.UNAVAILABLE, UNREACHABLE_MESSAGE
    for cls in type(error).__mro__:
        if cls in _DOMAIN_STATUS:
            status = _DOMAIN_STATUS[cls]
            return status, str(error) or status.name.lower().replace("_", " ")
    # Anything else is a bug: say nothing about internals to the caller.
    return grpc.StatusCode.INTERNAL, "internal error; the operators have been alerted"

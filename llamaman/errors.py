"""The one exception tree of the domain; the web layer maps it to HTTP once.

Every error a request can meet derives from LlamamanError and carries its HTTP status. Four
exceptions stay outside on purpose, because they are not errors to answer with:
`config.ConfigError` (stops the process at start, exit 78), `downloads.failures.Stopped` and
`instances.health.Cancelled` (control flow: a job or launch was asked to stop), and
`proxy.http1.BrokenUpstream` (an OSError, so socket-level handling treats a broken connection
like any other; the upstream pool turns it into UpstreamFailed).
"""
from __future__ import annotations

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                       404: "not_found_error", 409: "conflict_error", 413: "invalid_request_error",
                       429: "rate_limit_error"}


def speaks_openai(path: str) -> bool:
    """OpenAI-compatible routes answer errors in OpenAI's shape (LocalAI's /v1/backend/ keeps ours)."""
    return path.startswith("/v1/") and not path.startswith("/v1/backend/")


def error_body(status: int, message: str, path: str, extra: dict | None = None) -> dict:
    """The JSON error of a route: `{"error": message}`, or OpenAI's `{"error": {message, type, ...}}`."""
    if not speaks_openai(path):
        return {"error": message, **(extra or {})}
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": status}}


def http_parts(err: LlamamanError, path: str) -> tuple[int, dict, dict[str, str]]:
    """(status, JSON body, headers) of the answer to a request that met this error at `path`."""
    headers = {"Retry-After": str(err.extra["retry_after"])} if "retry_after" in err.extra else {}
    return err.status, error_body(err.status, err.message, path, err.extra), headers


class LlamamanError(Exception):
    """Base of every domain error; `status` is the HTTP status it maps to."""

    status = 500

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_json(self) -> dict:
        return {"error": self.message, **self.extra}


class Invalid(LlamamanError):
    status = 400


class Unauthorized(LlamamanError):
    status = 401


class Forbidden(LlamamanError):
    status = 403


class NotFound(LlamamanError):
    status = 404


class Conflict(LlamamanError):
    status = 409


class TooLarge(LlamamanError):
    status = 413


class QueueFull(LlamamanError):
    status = 429


class ClientGone(LlamamanError):
    """The client went away while its request waited in a gate (nginx's 499)."""

    status = 499


class BackendError(LlamamanError):
    """LocalAI's monitor could not read a backend's state."""

    status = 500


class TooManyRequests(LlamamanError):
    status = 429


class UpstreamFailed(LlamamanError):
    """llama-server could not be reached, broke the connection or failed the request (504: it timed out)."""

    status = 502

    def __init__(self, message: str, *, timeout: bool = False, **extra: object) -> None:
        super().__init__(message, **extra)
        self.timeout = timeout
        if timeout:
            self.status = 504


class Unavailable(LlamamanError):
    status = 503


class GateTimeout(LlamamanError):
    """A request waited in its gate's queue past the request timeout."""

    status = 504


class StorageError(LlamamanError):
    status = 503

"""The one exception tree of the domain; the web layer maps it to HTTP once."""
from __future__ import annotations


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


class TooManyRequests(LlamamanError):
    status = 429


class Unavailable(LlamamanError):
    status = 503


class StorageError(LlamamanError):
    status = 503

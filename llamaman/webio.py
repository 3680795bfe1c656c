"""Request helpers shared by the views: JSON bodies, query arguments, content negotiation, error mapping."""
from __future__ import annotations

from flask import Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from llamaman.errors import Invalid, LlamamanError, error_body, http_parts

MAX_BODY_BYTES = 16 * 1024 * 1024
_JSON_PREFIXES = ("/api/", "/v1/", "/backend/")


def services():
    """The composition root of the running app."""
    return current_app.extensions["llamaman"]


def json_body() -> dict:
    """The request's JSON object body, or Invalid with a clear message."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("request body must be a JSON object (Content-Type: application/json)")
    return data


def form_or_json() -> dict:
    """Form fields or a JSON object body, whichever the client sent."""
    return json_body() if request.is_json else request.form.to_dict()


def int_arg(name: str, default: int, low: int, high: int, *, blank_is_default: bool = False) -> int:
    """The query argument `name` as an integer in [low, high]; `default` when absent."""
    raw = request.args.get(name)
    if raw is None or (blank_is_default and raw == ""):
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise Invalid(f"'{name}' must be an integer between {low} and {high}")
    return int(raw)


def wants_json() -> bool:
    """True for API clients, False for browsers asking for pages."""
    if request.path.startswith(_JSON_PREFIXES) or request.is_json:
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def register_error_handlers(app: Flask) -> None:
    """Map domain errors and HTTP errors to JSON for API clients."""

    @app.errorhandler(LlamamanError)
    def domain_error(err: LlamamanError):
        status, body, headers = http_parts(err, request.path)
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers)
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException):
        if not wants_json():
            return err
        message = err.description or err.name
        if err.code == 413:
            message = f"request body too large (limit {MAX_BODY_BYTES // (1024 * 1024)} MiB)"
        response = jsonify(error_body(err.code or 500, message, request.path))
        response.status_code = err.code or 500
        return response


def conditional(response: Response) -> Response:
    """An ETag and 304 for an unchanged body: the dashboard re-polls lists that rarely change."""
    response.headers["Cache-Control"] = "no-cache"  # always revalidate, never serve stale
    response.add_etag()
    return response.make_conditional(request)

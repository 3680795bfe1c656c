"""Why a download stopped: a failure (retryable or not) or a stop request (pause, cancel)."""
from __future__ import annotations

from llamaman.errors import UpstreamFailed

TOKEN_HINT = "set a valid HuggingFace token (the download's hf_token, the stored token setting, or HF_TOKEN)"


class DownloadFailed(UpstreamFailed):
    """A download attempt failed; `retryable` failures are retried when auto-retry is on."""

    def __init__(self, message: str, *, retryable: bool = False, **extra: object) -> None:
        super().__init__(message, **extra)
        self.retryable = retryable


class Stopped(Exception):
    """The job was asked to pause, cancel or shut down while it ran.

    Outside the LlamamanError tree on purpose: a stop request is control flow, not a failure,
    and nothing that handles domain errors may catch it."""


def http_failure(status: int, what: str) -> DownloadFailed:
    """A clear failure for an HTTP error status of the Hub (4xx final, 5xx and 429 retryable)."""
    if status == 401:
        return DownloadFailed(f"HuggingFace answered 401 Unauthorized for {what}: the repository is private, "
                              f"gated or missing and no valid token was sent; {TOKEN_HINT}")
    if status == 403:
        return DownloadFailed(f"HuggingFace answered 403 Forbidden for {what}: the token has no access to "
                              f"this repository (accept its terms or use another token); {TOKEN_HINT}")
    if status == 404:
        return DownloadFailed(f"HuggingFace answered 404 Not Found for {what}")
    if status == 429 or status >= 500:
        return DownloadFailed(f"HuggingFace answered {status} for {what}", retryable=True)
    return DownloadFailed(f"HuggingFace answered {status} for {what}")

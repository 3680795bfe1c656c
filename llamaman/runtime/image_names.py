"""Docker image references: validation against the reference grammar and a canonical form.

The grammar is the one the engine itself accepts (distribution's `reference` package):
`[domain[:port]/]path[:tag][@digest]`, lowercase path components, at most 255 characters
of name. Anything else (shell metacharacters, URLs, credentials) is refused before the
engine sees it, and refusals never repeat the value: it may hold a password.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from llamaman.errors import Invalid

MAX_NAME = 255
MAX_REFERENCE = 512
DEFAULT_DOMAIN = "docker.io"

_DOMAIN_COMPONENT = r"(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])"
_DOMAIN = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:]+\])(?::[0-9]+)?")
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference; `repository` keeps the domain as written."""

    repository: str
    tag: str | None
    digest: str | None

    @property
    def name(self) -> str:
        """The reference as the engine is given it (tag defaulted to latest)."""
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def domain(self) -> str:
        """The registry host (docker.io for names without one)."""
        first, _, rest = self.repository.partition("/")
        return first if rest and _looks_like_domain(first) else DEFAULT_DOMAIN

    @property
    def repo_key(self) -> str:
        """Canonical repository: `llama` and `docker.io/library/llama` are one repository."""
        repo = self.repository
        if self.domain == DEFAULT_DOMAIN:
            path = repo.removeprefix("docker.io/").removeprefix("index.docker.io/")
            repo = f"docker.io/{path if '/' in path else 'library/' + path}"
        return repo

    @property
    def key(self) -> str:
        """Canonical form: two spellings of the same image give the same key."""
        repo = self.repo_key
        return f"{repo}@{self.digest}" if self.digest else f"{repo}:{self.tag or 'latest'}"


def parse_image(value: Any, field: str = "image") -> ImageRef:
    """Parse and validate a client-given image reference; Invalid (without the value) when bad."""
    if not isinstance(value, str):
        raise Invalid(f"'{field}' must be a string (an image reference such as "
                      "ghcr.io/ggml-org/llama.cpp:server)")
    text = value.strip()
    if not text:
        raise Invalid(f"'{field}' must not be empty")
    if len(text) > MAX_REFERENCE:
        raise Invalid(f"'{field}' is longer than {MAX_REFERENCE} characters")
    _refuse_credentials(text, field)
    return _parse(text, field)


def _refuse_credentials(text: str, field: str) -> None:
    """`user:pass@host/...` or a URL: refused with a message that does not echo the value."""
    head = text.split("/", 1)[0]
    if "://" in text or ("@" in head and "/" in text):
        raise Invalid(
            f"'{field}' must be a plain image reference (registry/repository:tag), not a URL "
            "or a reference with credentials in it; log the Docker engine in to the registry "
            "instead (docker login)")


def _parse(text: str, field: str) -> ImageRef:
    name, digest = text, None
    if "@" in text:
        name, digest = text.rsplit("@", 1)
        if not _DIGEST.fullmatch(digest):
            raise _bad(field, "the digest after '@' must look like sha256:<hex>")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
        if not _TAG.fullmatch(tag):
            raise _bad(field, "a tag is 1-128 of letters, digits, '_', '.', '-' (not starting with '.' or '-')")
    if len(name) > MAX_NAME:
        raise _bad(field, f"the repository name is longer than {MAX_NAME} characters")
    _check_name(name, field)
    return ImageRef(repository=name, tag=tag, digest=digest)


def _check_name(name: str, field: str) -> None:
    parts = name.split("/")
    if len(parts) > 1 and _looks_like_domain(parts[0]):
        if not _DOMAIN.fullmatch(parts[0]):
            raise _bad(field, "the registry host is not a valid host[:port]")
        parts = parts[1:]
    for part in parts:
        if not _PATH_COMPONENT.fullmatch(part):
            raise _bad(field, "repository path components are lowercase letters and digits "
                              "separated by '.', '_', '__' or '-'")


def _looks_like_domain(first: str) -> bool:
    """The engine's rule: a first component with '.', ':' or 'localhost' names a registry."""
    return "." in first or ":" in first or first == "localhost" or first != first.lower()


def _bad(field: str, why: str) -> Invalid:
    return Invalid(f"'{field}' is not a valid image reference: {why}")

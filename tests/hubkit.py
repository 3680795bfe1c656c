"""A local HuggingFace Hub on 127.0.0.1 that speaks the file protocol huggingface_hub and our
downloader use (no tests here).

Routes (as huggingface_hub 2.x calls them):
  GET  /api/models/{org}/{name}[/revision/{rev}][?blobs=True]   model info with siblings
                                         (with `blobs`: size, blobId and lfs {sha256,size,pointerSize})
  HEAD/GET /{org}/{name}/resolve/{rev}/{path}   ETag, X-Repo-Commit, X-Linked-Size, X-Linked-Etag,
                                         Accept-Ranges; Range → 206; LFS files redirect (302) to
                                         /cdn/{sha256} like the Hub's CDN, which needs no token.
Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound) like the Hub.

Knobs: a repo can require a token (401 without one, 403 with a wrong one); `drop_after` closes the
connection after N bytes of a file (k times); `fail` answers a status (k times) for a repo's
metadata or one file; `wrong_sha` advertises a wrong LFS sha256; `rate` paces every response.
Counters: bytes served per file, and every request with its Range header.
"""
from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024
LFS_SUFFIXES = (".gguf", ".safetensors", ".bin")
_SHA_CACHE: dict[tuple[str, int, int], str] = {}


@dataclass
class HubFile:
    name: str
    data: bytes | None = None
    path: Path | None = None
    size: int = 0
    sha256: str = ""
    blob_id: str = ""

    @property
    def lfs(self) -> bool:
        return self.name.endswith(LFS_SUFFIXES)

    def chunks(self, start: int, end: int):
        """The bytes start..end (inclusive) in chunks."""
        if self.data is not None:
            for pos in range(start, end + 1, CHUNK):
                yield self.data[pos:min(pos + CHUNK, end + 1)]
            return
        with open(self.path, "rb") as handle:
            handle.seek(start)
            left = end - start + 1
            while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str
    token: str | None = None
    wrong_sha: set[str] = field(default_factory=set)

    def advertised_sha(self, name: str) -> str:
        real = self.files[name].sha256
        return hashlib.sha256(real.encode()).hexdigest() if name in self.wrong_sha else real


def make_file(name: str, source: bytes | Path) -> HubFile:
    """A served file from bytes or from a path on disk (hashes of big files are cached)."""
    if isinstance(source, bytes):
        return HubFile(name, data=source, size=len(source), sha256=hashlib.sha256(source).hexdigest(),
                       blob_id=_git_sha1(source))
    stat = source.stat()
    key = (str(source), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_CACHE:
        digest = hashlib.sha256()
        with open(source, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _SHA_CACHE[key] = digest.hexdigest()
    return HubFile(name, path=source, size=stat.st_size, sha256=_SHA_CACHE[key],
                   blob_id=hashlib.sha1(_SHA_CACHE[key].encode()).hexdigest())


def _git_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubKit:
    """The server, its repos, knobs and counters."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.served: dict[str, int] = {}  # "org/name/path" -> bytes sent
        self.requests: list[dict] = []
        self.rate: float = 0.0  # bytes/s per response; 0 = as fast as possible
        self._drops: dict[str, list[int]] = {}  # key -> [bytes, times]
        self._fails: dict[str, list[int]] = {}  # key -> [status, times]
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], token: str | None = None) -> HubRepo:
        """Publish a repository with these files (path in repo -> bytes or a file on disk)."""
        built = {name: make_file(name, source) for name, source in files.items()}
        commit = hashlib.sha1(json.dumps([repo_id, sorted((n, f.sha256) for n, f in built.items())])
                              .encode()).hexdigest()
        repo = HubRepo(repo_id, built, commit, token)
        self.repos[repo_id] = repo
        return repo

    def drop_after(self, key: str, nbytes: int, times: int = 1) -> None:
        """Close the connection after `nbytes` of a file ("org/name/path"), `times` times."""
        self._drops[key] = [nbytes, times]

    def fail(self, key: str, status: int = 503, times: int = 1) -> None:
        """Answer `status` for a repo's metadata ("org/name") or a file ("org/name/path")."""
        self._fails[key] = [status, times]

    def served_bytes(self, key: str) -> int:
        return self.served.get(key, 0)

    def ranges(self, key: str) -> list[str | None]:
        """The Range header of every GET of a file's bytes, in order."""
        return [r["range"] for r in self.file_gets(key)]

    def file_gets(self, key: str) -> list[dict]:
        """Every GET of a file's bytes: its Range header, status and bytes sent."""
        return [r for r in self.requests if r["key"] == key and r["bytes"]]

    def take(self, knobs: dict[str, list[int]], key: str) -> int | None:
        """Use up one application of a knob; its value or None."""
        with self._lock:
            knob = knobs.get(key)
            if not knob or knob[1] <= 0:
                return None
            knob[1] -= 1
            return knob[0]

    def count(self, key: str, amount: int, entry: dict) -> None:
        with self._lock:
            self.served[key] = self.served.get(key, 0) + amount
            entry["sent"] += amount


def _handler_for(kit: HubKit) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        hub = kit
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: HubKit

    def log_message(self, *args) -> None:  # keep test output quiet
        return

    def do_GET(self) -> None:
        self._route(body=True)

    def do_HEAD(self) -> None:
        self._route(body=False)

    # routing ------------------------------------------------------------------------------
    def _route(self, body: bool) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self._model_info(parts[2:], parse_qs(url.query))
        if parts[:1] == ["cdn"] and len(parts) == 2:
            return self._cdn(parts[1], body)
        if len(parts) >= 5 and parts[2] == "resolve":
            return self._resolve("/".join(parts[:2]), parts[3], "/".join(parts[4:]), body)
        self._error(404, "not a Hub route", "EntryNotFound")

    def _model_info(self, parts: list[str], query: dict) -> None:
        repo_id = "/".join(parts[:2])
        repo = self._repo(repo_id)
        if repo is None or not self._authorised(repo) or self._failed(repo_id):
            return
        if len(parts) > 2 and (parts[2] != "revision" or len(parts) != 4 or parts[3] not in ("main", repo.commit)):
            return self._error(404, f"Invalid rev id: {'/'.join(parts[3:])}", "RevisionNotFound")
        blobs = query.get("blobs", ["false"])[0].lower() == "true"
        siblings = [_sibling(repo, f, blobs) for f in repo.files.values()]
        info = {"_id": repo.commit[:24], "id": repo_id, "modelId": repo_id, "author": repo_id.split("/")[0],
                "sha": repo.commit, "private": repo.token is not None, "gated": False, "disabled": False,
                "lastModified": "2025-01-01T00:00:00.000Z", "tags": ["gguf"], "library_name": "gguf",
                "siblings": siblings}
        self._json(200, info)

    def _resolve(self, repo_id: str, revision: str, name: str, body: bool) -> None:
        repo = self._repo(repo_id)
        if repo is None or not self._authorised(repo):
            return
        if revision not in ("main", repo.commit):
            return self._error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        hub_file = repo.files.get(name)
        if hub_file is None:
            return self._error(404, f"Entry not found: {name}", "EntryNotFound")
        if self._failed(f"{repo_id}/{name}"):
            return
        headers = {"X-Repo-Commit": repo.commit, "ETag": f'"{hub_file.blob_id}"'}
        if hub_file.lfs:
            sha = repo.advertised_sha(name)
            headers.update({"ETag": f'"{sha}"', "X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(hub_file.size),
                            "Location": f"/cdn/{hub_file.sha256}?key={repo_id}/{name}"})
            return self._empty(302, headers)
        self._send_file(hub_file, f"{repo_id}/{name}", headers, body)

    def _cdn(self, sha256: str, body: bool) -> None:
        key = parse_qs(urlsplit(self.path).query).get("key", [""])[0]
        org, _, rest = key.partition("/")
        name, _, path = rest.partition("/")
        repo = self.hub.repos.get(f"{org}/{name}")
        hub_file = repo.files.get(path) if repo else None
        if hub_file is None or hub_file.sha256 != sha256:
            return self._error(404, "no such blob", "EntryNotFound")
        self._send_file(hub_file, key, {"ETag": f'"{sha256}"'}, body)

    # bytes ------------------------------------------------------------------------------------
    def _send_file(self, hub_file: HubFile, key: str, headers: dict, body: bool) -> None:
        start, end = 0, hub_file.size - 1
        status = 200
        wanted = self.headers.get("Range")
        if wanted:
            parsed = _parse_range(wanted, hub_file.size)
            if parsed is None:
                self._log(key, wanted, 416, False)
                return self._empty(416, {"Content-Range": f"bytes */{hub_file.size}"})
            start, end, status = *parsed, 206
            headers["Content-Range"] = f"bytes {start}-{end}/{hub_file.size}"
        entry = self._log(key, wanted, status, body)
        self.send_response(status)
        for name, value in {**headers, "Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
                            "Content-Type": "application/octet-stream"}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self._stream(hub_file, key, start, end, entry)

    def _stream(self, hub_file: HubFile, key: str, start: int, end: int, entry: dict) -> None:
        limit = self.hub.take(self.hub._drops, key) if start <= end else None
        sent, began = 0, time.monotonic()
        try:
            for chunk in hub_file.chunks(start, end):
                if limit is not None and sent + len(chunk) >= limit:
                    self.wfile.write(chunk[:max(0, limit - sent)])
                    self.hub.count(key, max(0, limit - sent), entry)
                    return self._drop()
                self.wfile.write(chunk)
                sent += len(chunk)
                self.hub.count(key, len(chunk), entry)
                self._pace(sent, began)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _pace(self, sent: int, began: float) -> None:
        if self.hub.rate > 0:
            ahead = sent / self.hub.rate - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)

    def _drop(self) -> None:
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    # helpers ----------------------------------------------------------------------------------
    def _repo(self, repo_id: str) -> HubRepo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error(404, "Repository not found", "RepoNotFound")
        return repo

    def _authorised(self, repo: HubRepo) -> bool:
        if repo.token is None:
            return True
        sent = self.headers.get("Authorization")
        if not sent:
            self._error(401, "Invalid username or password.", "RepoNotFound")
            return False
        if sent != f"Bearer {repo.token}":
            self._error(403, "Invalid credentials in Authorization header", None)
            return False
        return True

    def _failed(self, key: str) -> bool:
        status = self.hub.take(self.hub._fails, key)
        if status is None:
            return False
        self._error(status, f"injected failure {status}", None)
        return True

    def _log(self, key: str, wanted: str | None, status: int, body: bool) -> dict:
        entry = {"key": key, "range": wanted, "status": status, "bytes": body, "sent": 0,
                 "authorization": self.headers.get("Authorization")}
        with self.hub._lock:
            self.hub.requests.append(entry)
        return entry

    def _json(self, status: int, value: object, headers: dict | None = None) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        for name, header in {**(headers or {}), "Content-Type": "application/json",
                             "Content-Length": str(len(data))}.items():
            self.send_header(name, header)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, message: str, code: str | None) -> None:
        headers = {"X-Error-Message": message, **({"X-Error-Code": code} if code else {})}
        self._json(status, {"error": message}, headers)

    def _empty(self, status: int, headers: dict) -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": "0"}.items():
            self.send_header(name, value)
        self.end_headers()


def _sibling(repo: HubRepo, hub_file: HubFile, blobs: bool) -> dict:
    entry: dict = {"rfilename": hub_file.name}
    if blobs:
        entry.update(size=hub_file.size, blobId=hub_file.blob_id)
        if hub_file.lfs:
            entry["lfs"] = {"sha256": repo.advertised_sha(hub_file.name), "size": hub_file.size,
                            "pointerSize": 134}
    return entry


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) of a single `bytes=a-` / `bytes=a-b` range, or None when unsatisfiable."""
    spec = header.strip().removeprefix("bytes=")
    first, _, last = spec.partition("-")
    if not first.isdigit() or int(first) >= size:
        return None
    end = min(int(last), size - 1) if last.isdigit() else size - 1
    return (int(first), end) if end >= int(first) else None


# driving downloads in tests -------------------------------------------------------------------
WAIT_S = 60
FINAL = ("completed", "failed", "cancelled")


def start_download(client, headers: dict, **body) -> dict:
    """POST /api/downloads through a Flask test client; the queued job."""
    response = client.post("/api/downloads", json=body, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def wait_download(client, job_id: str, statuses=FINAL, until=None, timeout: float = WAIT_S,
                  base: str = "") -> dict:
    """Poll a job through a Flask test client (or a requests session and the app's base URL)
    until its status is one of `statuses` (and `until(job)` holds)."""
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        job = _json(client.get(f"{base}/api/downloads/{job_id}"))
        if job["status"] in statuses and (until is None or until(job)):
            return job
        time.sleep(0.02)
    raise AssertionError(f"download never reached {statuses}: {job}")


def _json(response):
    return response.get_json() if hasattr(response, "get_json") else response.json()


def files_under(root: Path) -> dict[str, str]:
    """Every regular file under root (relative path -> sha256), to prove what changed."""
    found = {}
    for base, _dirs, names in os.walk(root):
        for name in names:
            path = Path(base, name)
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""Image tests' tools: a namespace of test repositories in the local registry, image variants
built from the llama.cpp image, and a registry address that accepts connections and never answers."""
from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tarfile
import threading
import urllib.request
import uuid
from typing import Any

from tests.helpers import LOOPBACK

MANIFEST_TYPES = ("application/vnd.docker.distribution.manifest.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json")


class RegistryKit:
    """Repositories `<registry>/llamaman-test-<random>/<name>`; cleanup() removes what it made."""

    def __init__(self, client: Any, registry: str, base_image: str) -> None:
        self.client = client
        self.registry = registry
        self.base = base_image
        self.namespace = f"llamaman-test-{uuid.uuid4().hex[:10]}"
        self.pushed: set[str] = set()

    def repo(self, name: str) -> str:
        return f"{self.registry}/{self.namespace}/{name}"

    def push(self, image: str, target: str) -> str:
        """Tag IMAGE as TARGET (repo:tag), push it; return the registry digest."""
        repo, tag = target.rsplit(":", 1)
        self.client.images.get(image).tag(repo, tag)
        digest = None
        for line in self.client.api.push(repo, tag=tag, stream=True, decode=True):
            assert "error" not in line, line
            digest = (line.get("aux") or {}).get("Digest", digest)
        assert digest, f"push of {target} reported no digest"
        self.pushed.add(repo.split("/", 1)[1])
        return digest

    def variant(self, tag: str, layer_bytes: int = 0) -> str:
        """Build a new image from the base (a label, plus a random layer when asked); return TAG."""
        files = {"Dockerfile": f"FROM {self.base}\nLABEL llamaman.test.variant={uuid.uuid4().hex}\n"}
        if layer_bytes:
            files["Dockerfile"] += "COPY blob /blob\n"
        context = _tar_context(files, os.urandom(layer_bytes) if layer_bytes else None)
        self.client.images.build(fileobj=context, custom_context=True, tag=tag, pull=False, rm=True,
                                 labels={"llamaman.test": "1"})
        return tag

    def cleanup(self) -> None:
        """Remove local images of this namespace and their manifests in the registry."""
        # Never forced: a name shared with another image (the base llama.cpp tag) is only untagged.
        for image in self.client.images.list():
            for name in image.tags + (image.attrs.get("RepoDigests") or []):
                if f"/{self.namespace}/" in name:
                    _quiet(lambda n=name: self.client.images.remove(n))
        for repo in self.pushed:
            _quiet(lambda r=repo: self._delete_manifests(r))
        self.client.images.prune(filters={"dangling": True, "label": "llamaman.test=1"})

    def _delete_manifests(self, repo: str) -> None:
        base = f"http://{self.registry}/v2/{repo}"
        with urllib.request.urlopen(f"{base}/tags/list", timeout=10) as resp:
            tags = json.load(resp).get("tags") or []
        for tag in tags:
            head = urllib.request.Request(f"{base}/manifests/{tag}", method="HEAD",
                                          headers={"Accept": MANIFEST_TYPES})
            with urllib.request.urlopen(head, timeout=10) as resp:
                digest = resp.headers["Docker-Content-Digest"]
            _quiet(lambda d=digest: urllib.request.urlopen(
                urllib.request.Request(f"{base}/manifests/{d}", method="DELETE"), timeout=10))


class SilentRegistry:
    """A loopback TCP port that accepts connections and never answers, until release()."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((LOOPBACK, 0))
        self.sock.listen(16)
        self.address = f"{LOOPBACK}:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def release(self) -> None:
        """Close everything: the engine's requests fail and nothing answers on the port again."""
        self.sock.close()
        for conn in self.accepted:
            conn.close()


def _tar_context(files: dict[str, str], blob: bytes | None) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            _add(tar, name, text.encode())
        if blob is not None:
            _add(tar, "blob", blob)
    buffer.seek(0)
    return buffer


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _quiet(call) -> None:
    """Best-effort cleanup of test leftovers: a failure is not the test's result."""
    with contextlib.suppress(Exception):
        call()

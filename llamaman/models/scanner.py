"""Walk MODELS_DIR once: GGUF files, HuggingFace folders, sidecars and directory mtimes.

Only stats are taken here (os.scandir gives them cheaply); parsing happens in the index,
and only for files whose (size, mtime_ns) changed since the last scan.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_DEPTH = 8
MAX_ENTRIES = 200_000  # a safety net against scanning a whole disk by misconfiguration
SIDECAR_SUFFIX = ".llamaman.json"
HF_SIDECAR = ".llamaman.json"
HF_MARKER = "config.json"
# Split GGUF parts, `name-00001-of-00003.gguf`; the suffix group keeps the file's own spelling.
SHARD_RE = re.compile(
    r"^(?P<base>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<suffix>\.gguf)$", re.IGNORECASE)

Stat = tuple[int, int]  # (size, mtime_ns)


@dataclass(frozen=True)
class FileInfo:
    """A regular file (or a symlink to one inside MODELS_DIR) with its stat."""

    path: str
    size: int
    mtime_ns: int

    @property
    def stat(self) -> Stat:
        return self.size, self.mtime_ns


@dataclass
class HfDir:
    """A HuggingFace model folder: its top-level files and the size of its whole tree."""

    path: str
    files: dict[str, Stat] = field(default_factory=dict)
    size: int = 0
    mtime_ns: int = 0


@dataclass
class ScanResult:
    """Everything one walk found."""

    ggufs: list[FileInfo] = field(default_factory=list)
    hf_dirs: dict[str, HfDir] = field(default_factory=dict)
    sidecars: dict[str, Stat] = field(default_factory=dict)
    dirs: dict[str, int] = field(default_factory=dict)  # directory → mtime_ns (-1: missing)
    entries: int = 0


def scan(root: str) -> ScanResult:
    """Walk root (not following directory symlinks) and collect model candidates."""
    result = ScanResult()
    real_root = os.path.realpath(root)
    stack: list[tuple[str, int, tuple[HfDir, ...]]] = [(root, 0, ())]
    while stack:
        directory, depth, owners = stack.pop()
        children = _list_dir(directory, result)
        if children is None:
            continue
        if directory != root and any(e.name == HF_MARKER for e in children):
            hf = HfDir(directory, mtime_ns=result.dirs[directory])
            result.hf_dirs[directory] = hf
            owners = (*owners, hf)
        for entry in children:
            if entry.is_dir(follow_symlinks=False):
                if depth < MAX_DEPTH and not entry.name.startswith("."):
                    stack.append((entry.path, depth + 1, owners))
            else:
                _add_file(entry, real_root, owners, result)
        if result.entries > MAX_ENTRIES:
            log.warning("model scan stopped after %d entries under %s", MAX_ENTRIES, root)
            break
    return result


def _list_dir(directory: str, result: ScanResult) -> list[os.DirEntry] | None:
    """The entries of directory, recording its mtime; None when it cannot be read."""
    try:
        result.dirs[directory] = os.stat(directory).st_mtime_ns
        with os.scandir(directory) as entries:
            children = list(entries)
    except OSError:
        result.dirs.setdefault(directory, -1)
        return None
    result.entries += len(children)
    return children


def _add_file(entry: os.DirEntry, real_root: str, owners: tuple[HfDir, ...], result: ScanResult) -> None:
    """Record one file: its size in every enclosing HF folder, and what kind of file it is."""
    try:
        if not entry.is_file(follow_symlinks=True):
            return
        if entry.is_symlink() and not is_strictly_inside(os.path.realpath(entry.path), real_root):
            return  # a link escaping MODELS_DIR is neither listed nor launchable
        st = entry.stat(follow_symlinks=True)
    except OSError:
        return
    for owner in owners:
        owner.size += st.st_size
        owner.mtime_ns = max(owner.mtime_ns, st.st_mtime_ns)
    if owners and os.path.dirname(entry.path) == owners[-1].path:
        owners[-1].files[entry.name] = (st.st_size, st.st_mtime_ns)
    name = entry.name
    if name.endswith(SIDECAR_SUFFIX):
        result.sidecars[entry.path] = (st.st_size, st.st_mtime_ns)
    elif name.lower().endswith(".gguf") and not name.startswith("."):
        result.ggufs.append(FileInfo(entry.path, st.st_size, st.st_mtime_ns))


def dirs_changed(dirs: dict[str, int]) -> bool:
    """True when any directory of the last scan changed (a file added, removed or renamed)."""
    for directory, mtime_ns in dirs.items():
        try:
            if os.stat(directory).st_mtime_ns != mtime_ns:
                return True
        except OSError:
            if mtime_ns != -1:
                return True
    return False


def is_strictly_inside(path: str, root: str) -> bool:
    """True when path is below root (never root itself); both already normalised."""
    return path != root and path.startswith(root.rstrip(os.sep) + os.sep)

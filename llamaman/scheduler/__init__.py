"""The one place that decides, for API requests, whether a model starts, wakes or evicts another.

Decisions are serialised by one lock, and a launch or wake turns the instance `starting`
before the lock is released: a burst for a cold model causes exactly one launch, and the
number of loading-or-loaded chat models never exceeds LLAMAMAN_MAX_MODELS (embedding models
are not counted and never evicted).
"""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llamaman.config import Config
from llamaman.errors import Conflict, NotFound, Unavailable
from llamaman.instances import records as rec
from llamaman.instances.service import InstanceService
from llamaman.models.library import ModelLibrary
from llamaman.presets.service import PresetService
from llamaman.settings.service import SettingsService

LOADED = frozenset({rec.STARTING, rec.HEALTHY})
API_LAUNCHERS = frozenset({"ollama", "openai"})
EVICT_POLL_S = 0.05
ADMIN_MESSAGE = ("model limit reached (LLAMAMAN_MAX_MODELS={}); admin-launched models cannot be "
                 "evicted via the API")
OPENAI_MESSAGE = ("model limit reached (LLAMAMAN_MAX_MODELS={}); the OpenAI API does not evict "
                  "running models")


class EventCounts:
    """Scheduler decisions counted per kind and labels (model, launcher or instance) for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # a leaf lock: the scrape reads while decisions count
        self._counts: dict[tuple[str, tuple[str, ...]], int] = {}

    def add(self, kind: str, *labels: str) -> None:
        with self._lock:
            key = (kind, labels)
            self._counts[key] = self._counts.get(key, 0) + 1

    def snapshot(self) -> dict[str, dict[tuple[str, ...], int]]:
        """{kind: {labels: count}} as of now."""
        with self._lock:
            out: dict[str, dict[tuple[str, ...], int]] = {}
            for (kind, labels), count in self._counts.items():
                out.setdefault(kind, {})[labels] = count
            return out


class Scheduler:
    def __init__(self, config: Config, instances: InstanceService, library: ModelLibrary,
                 presets: PresetService, settings: SettingsService) -> None:
        self.config = config
        self.instances = instances
        self.library = library
        self.presets = presets
        self.settings = settings
        self._lock = threading.Lock()
        self._claims: dict[str, int] = {}  # requests routed to an instance, not yet admitted by its gate
        self._claims_lock = threading.Lock()  # a leaf lock: never held while taking another
        self.events = EventCounts()  # launches (model, launcher), evictions and wakes (model, instance)

    @contextmanager
    def serving(self, name: str, launcher: str, embedding: bool = False) -> Iterator[str]:
        """The instance for `name`, protected from eviction until the block has been admitted
        by the instance's gate (then its in-flight count protects it)."""
        instance_id = self.instance_for(name, launcher, embedding)
        try:
            yield instance_id
        finally:
            with self._claims_lock:
                self._claims[instance_id] -= 1
                if not self._claims[instance_id]:
                    del self._claims[instance_id]

    def instance_for(self, name: str, launcher: str, embedding: bool = False) -> str:
        """The instance that will serve `name`, started or woken when needed (and claimed)."""
        entry = self.library.find(name)
        if entry is None or entry.get("type") != "gguf" or entry.get("unreadable"):
            raise NotFound(f"model '{name}' not found")
        with self._lock:
            return self._claim(self._place(entry["path"], launcher, embedding))

    def _place(self, path: str, launcher: str, embedding: bool) -> str:
        existing = self._existing(path, embedding)
        if existing is not None and existing["status"] in LOADED:
            return existing["id"]
        if not embedding:
            self._make_room(launcher)
        if existing is not None:  # asleep: waking loads it, so it counts like a launch
            self.instances.wake(existing["id"], self.config.request_timeout)
            self.events.add("wakes", existing["model_name"], existing["id"])
            return existing["id"]
        return self._launch(path, launcher, embedding)

    def _claim(self, instance_id: str) -> str:
        with self._claims_lock:
            self._claims[instance_id] = self._claims.get(instance_id, 0) + 1
        return instance_id

    def _claimed(self, instance_id: str) -> bool:
        with self._claims_lock:
            return self._claims.get(instance_id, 0) > 0

    def wake(self, instance_id: str, timeout: float) -> None:
        """Wake a sleeping instance for a request on its own port, making room like its
        launcher would (admin-launched ones with the admin's rights)."""
        with self._lock:
            record = self.instances.registry.find(instance_id)
            if record is None or record["status"] != rec.SLEEPING:
                return
            if not (record.get("settings") or {}).get("embedding"):
                launcher = record.get("launched_by") or "admin"
                self._make_room("ollama" if launcher in API_LAUNCHERS else "admin")
            self.instances.wake(instance_id, timeout)
            self.events.add("wakes", record["model_name"], instance_id)

    def admin_launch(self, body: dict[str, Any], confirm: bool) -> dict[str, Any]:
        """A launch from the UI/REST API: over the cap it needs confirming (or the enforce
        setting) and then evicts, API-launched models first."""
        with self._lock:
            self._admit_admin(body.get("embedding") is True, confirm)
            launched = self.instances.launch(body, launched_by="admin")
            self.events.add("launches", launched["model_name"], "admin")
            return launched

    def admin_start(self, instance_id: str, confirm: bool) -> None:
        """Start a defined (stopped, failed or parked) instance under the admin launch rules."""
        with self._lock:
            record = self.instances.registry.snapshot(instance_id)
            if record["status"] in LOADED:
                return
            self._admit_admin(bool((record.get("settings") or {}).get("embedding")), confirm)
            if record["status"] == rec.SLEEPING:
                self.instances.wake(instance_id, self.config.request_timeout)
                self.events.add("wakes", record["model_name"], instance_id)
                return
            self.instances.relaunch(instance_id)
            self.events.add("launches", record["model_name"], "admin")

    def _admit_admin(self, embedding: bool, confirm: bool) -> None:
        """Over the cap an admin launch needs confirming (or the enforce setting), then evicts."""
        cap = self.config.max_models
        if cap > 0 and not embedding and len(self._loaded_chat_models()) >= cap:
            if not (confirm or self.settings.get()["admin_ui_enforce_max_models"]):
                raise Conflict(f"model limit reached (LLAMAMAN_MAX_MODELS={cap}); launching evicts "
                               "the least recently used model: send \"confirm_evict\": true to go ahead",
                               confirm_required=True)
            self._make_room("admin")

    def _existing(self, path: str, embedding: bool) -> dict[str, Any] | None:
        """The best active instance of the model: loaded before sleeping, healthy first."""
        rows = self.instances.registry.select(
            lambda r: path in (r["model_path"], r.get("real_model_path")) and r["status"] in rec.ACTIVE
            and bool((r.get("settings") or {}).get("embedding")) == embedding, ("id", "status", "model_name"))
        rows.sort(key=lambda row: (row[1] not in LOADED, row[1] != rec.HEALTHY))
        return dict(zip(("id", "status", "model_name"), rows[0], strict=True)) if rows else None

    def _launch(self, path: str, launcher: str, embedding: bool) -> str:
        explicit: dict[str, Any] = {"model_path": path}
        if embedding:
            explicit["embedding"] = True
        body = self.presets.launch_body(path, explicit)
        if self.config.idle_timeout_min and "idle_timeout_min" not in body:
            body["idle_timeout_min"] = self.config.idle_timeout_min
        launched = self.instances.launch(body, launched_by=launcher)
        self.events.add("launches", launched["model_name"], launcher)
        return launched["id"]

    def _make_room(self, launcher: str) -> None:
        """Evict least-recently-used models the launcher may evict until one more fits."""
        cap = self.config.max_models
        if cap <= 0:
            return
        deadline = time.monotonic() + self.config.request_timeout
        while len(self._loaded_chat_models()) >= cap:
            victims = self._victims(launcher, cap)
            idle = [v for v in victims if v["active_requests"] == 0 and not self._claimed(v["id"])]
            if idle and self.instances.evict(idle[0]["id"]):
                self.events.add("evictions", idle[0]["model_name"], idle[0]["id"])
                continue
            if time.monotonic() > deadline:
                raise Unavailable(f"model limit reached (LLAMAMAN_MAX_MODELS={cap}); every model "
                                  "that could be evicted is busy")
            time.sleep(EVICT_POLL_S)  # a victim is serving a request: wait for it, never cut it

    def _loaded_chat_models(self) -> list[dict[str, Any]]:
        return [i for i in self.instances.list() if i["status"] in LOADED and not i.get("embedding")]

    def _victims(self, launcher: str, cap: int) -> list[dict[str, Any]]:
        """Models this launcher may evict, API-launched ones first, each group least recently
        used first; Unavailable when there are none."""
        if launcher == "openai":
            raise Unavailable(OPENAI_MESSAGE.format(cap))
        last_use = self.instances.last_use()
        loaded = sorted(self._loaded_chat_models(),
                        key=lambda i: last_use.get(i["id"], i.get("healthy_at") or 0))
        victims = [i for i in loaded if i.get("launched_by") in API_LAUNCHERS]
        if launcher == "admin" or self.settings.get()["allow_ollama_api_override_admin"]:
            victims += [i for i in loaded if i.get("launched_by") not in API_LAUNCHERS]
        if not victims:
            raise Unavailable(ADMIN_MESSAGE.format(cap))
        return victims

"""The composition root: builds every service from the config, starts and stops them."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from llamaman.auth.keys import ApiKeyService
from llamaman.auth.ratelimit import FailureLimiter
from llamaman.auth.users import UserService
from llamaman.cleanup.service import CleanupService
from llamaman.cluster.registry import NodeRegistry
from llamaman.config import Config
from llamaman.downloads.service import DownloadService
from llamaman.dropin.records import UpstreamRecords
from llamaman.instances.events import (
    CLOSING,
    REMOVED,
    SERVING,
    STOPPED,
    LifecycleEvent,
    Subscriber,
)
from llamaman.instances.logs import InstanceLogs
from llamaman.instances.registry import InstanceRegistry
from llamaman.instances.service import InstanceService
from llamaman.models.library import ModelLibrary
from llamaman.monitoring.service import Monitor
from llamaman.presets.service import PresetService
from llamaman.proxy.admission import Pipeline
from llamaman.proxy.forward import Forwarder
from llamaman.proxy.gate import Gates
from llamaman.proxy.public import PublicPorts
from llamaman.proxy.record import ProxyRecording, RecordingProxy
from llamaman.proxy.servers import PortServers
from llamaman.proxy.upstream import UpstreamPool
from llamaman.recording.recorder import Recorder
from llamaman.runtime import create_runtime
from llamaman.runtime.images import ImageService
from llamaman.scheduler import Scheduler
from llamaman.settings.service import SettingsService
from llamaman.storage import open_storage
from llamaman.storage.base import Storage

log = logging.getLogger(__name__)

LOGIN_WINDOW_S = 300
LOGIN_FAILURES_PER_CLIENT = 20
LOGIN_FAILURES_PER_USER = 5


@dataclass
class Services:
    config: Config
    storage: Storage
    settings: SettingsService
    users: UserService
    api_keys: ApiKeyService
    registry: NodeRegistry
    instances: InstanceService
    ports: PublicPorts
    upstream: UpstreamPool
    library: ModelLibrary
    presets: PresetService
    scheduler: Scheduler
    forwarder: Forwarder
    recorder: Recorder
    downloads: DownloadService
    images: ImageService
    cleanup: CleanupService
    monitor: Monitor
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    started: bool = False

    def start(self) -> None:
        """Open storage and start background services (once)."""
        with self._lock:
            if self.started:
                return
            for warning in self.config.warnings:
                log.warning(warning)
            self.config.logs_dir.mkdir(parents=True, exist_ok=True)
            self.storage.open(UpstreamRecords())  # imports LlamaMan 1.2.1 data found there, once
            self.registry.start()
            self.library.start()
            self.recorder.start()
            self.instances.start(create_runtime(self.config))
            self.downloads.start()
            self.images.start()  # after the runtime: auto-update needs it
            self.cleanup.start()
            self.monitor.start()
            self.started = True
            log.info("llamaman services started (node %s)", self.config.node_name)

    def stop(self) -> None:
        """Stop background services and release storage (once)."""
        with self._lock:
            if not self.started:
                return
            self.monitor.stop()
            self.cleanup.stop()
            self.images.stop()
            self.downloads.stop()
            self.instances.close()
            self.library.stop()
            self.recorder.stop()
            self.upstream.close()
            self.registry.stop()
            self.storage.close()
            self.started = False
            log.info("llamaman services stopped")


def build_services(config: Config) -> Services:
    """Wire every service; nothing connects or starts until Services.start()."""
    storage = open_storage(node=config.node_name, data_dir=config.data_dir,
                           recordings_dir=config.recordings_dir, database_url=config.database_url)
    users = UserService(
        storage.users,
        per_client=FailureLimiter(LOGIN_FAILURES_PER_CLIENT, LOGIN_WINDOW_S),
        per_user=FailureLimiter(LOGIN_FAILURES_PER_USER, LOGIN_WINDOW_S),
    )
    settings = SettingsService(storage.settings, config.node_name)
    api_keys = ApiKeyService(storage.api_keys)
    upstream = UpstreamPool(connect_timeout=config.health_check_timeout, read_timeout=config.request_timeout)
    gates = Gates()
    instances = InstanceService(config, InstanceRegistry(storage.instances), InstanceLogs(config.logs_dir), gates)
    library = ModelLibrary(config.models_dir)
    presets = PresetService(storage.presets, instances, config)
    recorder = Recorder(storage.request_log, lambda: settings.get()["request_recording_mode"],
                        lambda: settings.get()["request_recording_retention_days"],
                        lambda: settings.generation)
    recording = ProxyRecording(recorder)
    pipeline = Pipeline(instances, gates, upstream, config.request_timeout)
    ports = PublicPorts(PortServers(config.bind_host), lambda instance_id: RecordingProxy(
        instance_id, instances, pipeline, api_keys, settings.require_auth, recording))
    instances.events.subscribe(port_follower(ports))
    scheduler = Scheduler(config, instances, library, presets, settings)
    instances.waker = scheduler.wake  # wakes from instance ports go through the cap too
    downloads = DownloadService(config, storage.downloads, settings, library)
    return Services(
        config=config,
        storage=storage,
        settings=settings,
        users=users,
        api_keys=api_keys,
        registry=NodeRegistry(storage.nodes, config),
        instances=instances,
        ports=ports,
        upstream=upstream,
        library=library,
        presets=presets,
        scheduler=scheduler,
        forwarder=Forwarder(pipeline),
        recorder=recorder,
        images=ImageService(storage.settings, config.node_name, lambda: instances.runtime),
        downloads=downloads,
        cleanup=CleanupService(settings, downloads, instances),
        monitor=Monitor(config, instances),
    )


def port_follower(ports: PublicPorts) -> Subscriber:
    """The lifecycle subscriber that serves each instance's public port while it is active."""
    def follow(event: LifecycleEvent) -> None:
        if event.kind == SERVING:
            ports.serve(event.instance_id, event.port)
        elif event.kind in (STOPPED, REMOVED):
            ports.release(event.instance_id)
        elif event.kind == CLOSING:
            ports.close()
    return follow

"""This node's entry in the node registry, refreshed by a heartbeat job."""
from __future__ import annotations

import os
import socket
import time

from llamaman import __version__
from llamaman.config import Config
from llamaman.periodic import PeriodicJob
from llamaman.storage.base import Collection, Record

CLUSTER_HEARTBEAT_S = 5.0
SINGLE_NODE_HEARTBEAT_S = 60.0


class NodeRegistry:
    """Registers this node on start, heartbeats while running, marks it stopped on stop."""

    def __init__(self, nodes: Collection, config: Config) -> None:
        self.nodes = nodes
        self.config = config
        interval = CLUSTER_HEARTBEAT_S if config.cluster_enabled else SINGLE_NODE_HEARTBEAT_S
        self.job = PeriodicJob("node-heartbeat", interval, self.heartbeat)
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.time()
        self.job.start()

    def stop(self) -> None:
        self.job.stop()
        self.nodes.update(self.config.node_name, self._mark_stopped)

    def heartbeat(self) -> None:
        """Write this node's liveness record."""
        self.nodes.update(self.config.node_name, self._refresh)

    def _refresh(self, current: Record | None) -> Record:
        return {
            **(current or {}),
            "name": self.config.node_name,
            "status": "online",
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "version": __version__,
            "advertise_url": self.config.cluster_advertise_url,
            "cluster_enabled": self.config.cluster_enabled,
            "started_at": self.started_at,
            "last_seen": time.time(),
        }

    def _mark_stopped(self, current: Record | None) -> Record:
        return {**(current or {"name": self.config.node_name}), "status": "stopped",
                "stopped_at": time.time()}

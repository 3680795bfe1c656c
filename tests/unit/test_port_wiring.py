"""The composition root serves public ports from the instance lifecycle events: a fake of our
own PortServers records what is started and stopped."""
from llamaman.instances.events import (
    CLOSING,
    REMOVED,
    SERVING,
    STOPPED,
    LifecycleEvents,
)
from llamaman.proxy.public import PublicPorts
from llamaman.services import port_follower


class FakeServers:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def start(self, port, app):
        self.calls.append(("start", port, app))

    def stop(self, port):
        self.calls.append(("stop", port))

    def stop_all(self):
        self.calls.append(("stop_all",))


def wired():
    servers = FakeServers()
    events = LifecycleEvents()
    events.subscribe(port_follower(PublicPorts(servers, lambda instance_id: f"app-{instance_id}")))
    return events, servers


def test_serving_starts_the_instance_app_and_stopped_closes_its_port():
    events, servers = wired()
    events.emit(SERVING, "a", 8001)
    events.emit(STOPPED, "a", 8001)
    assert servers.calls == [("start", 8001, "app-a"), ("stop", 8001)]


def test_a_new_port_closes_the_old_one_first():
    events, servers = wired()
    events.emit(SERVING, "a", 8001)
    events.emit(SERVING, "a", 8002)
    assert servers.calls == [("start", 8001, "app-a"), ("stop", 8001), ("start", 8002, "app-a")]


def test_removed_or_stopped_twice_never_closes_a_port_another_instance_took():
    events, servers = wired()
    events.emit(SERVING, "a", 8001)
    events.emit(STOPPED, "a", 8001)
    events.emit(SERVING, "b", 8001)  # the freed port went to another instance
    events.emit(REMOVED, "a")
    events.emit(STOPPED, "a", 8001)
    assert servers.calls == [("start", 8001, "app-a"), ("stop", 8001), ("start", 8001, "app-b")]


def test_closing_stops_every_port():
    events, servers = wired()
    events.emit(SERVING, "a", 8001)
    events.emit(CLOSING)
    assert servers.calls[-1] == ("stop_all",)


def test_a_failing_subscriber_reaches_the_emitter_and_stops_later_ones():
    events = LifecycleEvents()
    seen = []

    def refuse(event):
        raise RuntimeError(f"cannot serve {event.port}")
    events.subscribe(refuse)
    events.subscribe(seen.append)
    try:
        events.emit(SERVING, "a", 8001)
    except RuntimeError as err:
        assert str(err) == "cannot serve 8001"
    else:
        raise AssertionError("the subscriber's error was swallowed")
    assert seen == []

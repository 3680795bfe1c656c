"""The runtime collector's per-model gauges and labelled scheduler counters, from plain records."""
from __future__ import annotations

from llamaman.instances.records import assigned_gpus
from llamaman.recording.metrics import RuntimeCollector, render
from llamaman.scheduler import EventCounts


class SchedulerCounts:
    """What the collector reads of the scheduler: its event counts."""

    def __init__(self) -> None:
        self.events = EventCounts()


def test_counters_are_labelled_and_client_spellings_merge():
    scheduler = SchedulerCounts()
    scheduler.events.add("launches", "Alpha", "ollama")
    scheduler.events.add("launches", "alpha:latest", "ollama")
    scheduler.events.add("launches", "alpha", "admin")
    scheduler.events.add("wakes", "beta", "i2")
    scheduler.events.add("evictions", "beta", "i2")
    scheduler.events.add("evictions", "beta", "i2")
    text = render(RuntimeCollector(list, scheduler)).decode()
    assert 'llamaman_scheduler_launches_total{launcher="ollama",model="alpha"} 2.0' in text
    assert 'llamaman_scheduler_launches_total{launcher="admin",model="alpha"} 1.0' in text
    assert 'llamaman_scheduler_wakes_total{instance="i2",model="beta"} 1.0' in text
    assert 'llamaman_scheduler_evictions_total{instance="i2",model="beta"} 2.0' in text


def test_model_gauges_count_loaded_instances_and_queued_requests():
    records = [
        {"id": "a1", "model_name": "alpha", "status": "healthy", "queued_requests": 2},
        {"id": "a2", "model_name": "alpha", "status": "starting", "queued_requests": 1},
        {"id": "b1", "model_name": "beta", "status": "sleeping", "queued_requests": 0},
        {"id": "c1", "model_name": "gamma", "status": "stopped", "queued_requests": 0},
    ]
    text = render(RuntimeCollector(lambda: records, SchedulerCounts())).decode()
    assert 'llamaman_model_loaded_instances{model="alpha"} 2.0' in text
    assert 'llamaman_model_loaded_instances{model="beta"} 0.0' in text
    assert 'llamaman_model_loaded_instances{model="gamma"}' not in text  # stopped records hold nothing
    assert 'llamaman_model_queued_requests{model="alpha"} 3.0' in text
    assert "llamaman_models_loaded 1.0" in text


def test_assigned_gpus_cpu_only_pinned_default_and_all():
    assert assigned_gpus({"n_gpu_layers": 0, "gpu_devices": "1"}, (0,)) == []
    assert assigned_gpus({"gpu_devices": "0,2"}, (1,)) == [0, 2]
    assert assigned_gpus({"gpu_devices": ""}, (1,)) == [1]
    assert assigned_gpus({}, None) is None

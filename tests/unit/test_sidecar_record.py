"""What the sidecar records from a relayed response, with a fake recorder (our own interface)."""
import json

from llamaman.proxy.record import ProxyRecording, TurnTap, describe

TIMINGS = {"prompt_n": 7, "predicted_n": 3, "predicted_ms": 60.0}


class FakeRecorder:
    def __init__(self, on: bool) -> None:
        self.on = on
        self.reads = 0
        self.version = 0
        self.submitted: list[dict] = []

    def mode_version(self) -> int:
        return self.version

    def enabled(self) -> bool:
        self.reads += 1
        return self.on

    def submit(self, turn: dict) -> None:
        self.submitted.append(turn)


def sse(event: dict) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def delta(text: str) -> dict:
    return {"choices": [{"delta": {"content": text}}]}


def test_the_mode_is_read_once_a_second_and_again_after_a_settings_save():
    now = [0.0]
    recorder = FakeRecorder(on=False)
    recording = ProxyRecording(recorder, clock=lambda: now[0])
    assert recording.begin("/v1/chat/completions", 0.0) is None
    assert recording.begin("/v1/chat/completions", 0.0) is None and recorder.reads == 1
    recorder.on, recorder.version = True, 1  # a save through this node
    assert recording.begin("/v1/chat/completions", 0.0) is not None and recorder.reads == 2
    recorder.on = False  # changed elsewhere: seen once the second is over
    assert recording.enabled() and recorder.reads == 2
    now[0] = 1.5
    assert not recording.enabled() and recorder.reads == 3


def test_a_stream_split_anywhere_is_observed_event_by_event():
    recorder = FakeRecorder(on=True)
    recording = ProxyRecording(recorder)
    turn = recording.begin("/v1/chat/completions", 0.0)
    describe(turn, {"model": "m", "stream": True, "messages": []}, "gemma", "i1")
    tap = TurnTap(turn, 200, "text/event-stream")
    raw = sse({"choices": [{"delta": {"role": "assistant", "content": None}}]}) + sse(delta("Hel")) + sse(
        delta("lo")) + sse({"choices": [], "timings": TIMINGS}) + b"data: [DONE]\n\n"
    for start in range(0, len(raw), 17):
        tap.feed(raw[start:start + 17])
    recording.finish(tap, None)
    record = recorder.submitted[0]
    assert record["response"] == "Hello" and record["streamed"] and record["status"] == 200
    assert record["completion_tokens"] == 3 and record["prompt_tokens"] == 7 and record["gen_tps"] == 50.0
    assert record["ttft_s"] is not None and record["model"] == "gemma" and record["inst_id"] == "i1"


def test_whole_bodies_completion_events_and_broken_streams():
    recorder = FakeRecorder(on=True)
    recording = ProxyRecording(recorder)
    whole = recording.begin("/completion", 0.0)
    tap = TurnTap(whole, 200, "application/json")
    body = json.dumps({"content": "Hi there", "timings": TIMINGS}).encode()
    tap.feed(body[:5])
    tap.feed(body[5:])
    recording.finish(tap, None)
    streamed = recording.begin("/completion", 0.0)
    tap = TurnTap(streamed, 200, "text/event-stream")
    tap.feed(sse({"content": "a"}) + b"data: {not json}\n\n" + sse({"content": "b", "choices": "odd"}))
    recording.finish(tap, "llama-server stopped while streaming")
    first, second = recorder.submitted
    assert first["response"] == "Hi there" and not first["streamed"] and first["completion_tokens"] == 3
    assert second["response"] == "a" and second["status"] == 502 and "stopped" in second["error"]

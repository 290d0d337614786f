"""The Media Streams serializer: documented frames, strict rejection, round trips."""

from __future__ import annotations

import base64
import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice.carriers import twilio
from voice.carriers.twilio import (
    MAX_FRAME_CHARS,
    Clear,
    Connected,
    Dtmf,
    Mark,
    MarkStatus,
    MarkTracker,
    Media,
    OutboundMark,
    OutboundMedia,
    ProtocolError,
    Start,
    Stop,
    parse_inbound,
    parse_outbound,
)
from voice.config import TWILIO_FORMAT, AudioFormat, Encoding

MZ = "MZ" + "0" * 32
CA = "CA" + "1" * 32
AC = "AC" + "2" * 32


def frame(obj: object) -> str:
    return json.dumps(obj)


# -- the documented frames ------------------------------------------------------------


def test_parses_the_documented_frames() -> None:
    assert parse_inbound('{"event":"connected","protocol":"Call","version":"1.0.0"}') == (
        Connected(protocol="Call", version="1.0.0")
    )
    start = parse_inbound(
        frame(
            {
                "event": "start",
                "sequenceNumber": "1",
                "streamSid": MZ,
                "start": {
                    "streamSid": MZ,
                    "accountSid": AC,
                    "callSid": CA,
                    "tracks": ["inbound"],
                    "customParameters": {"token": "abc", "agent": "7"},
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                },
            }
        )
    )
    assert start == Start(
        stream_sid=MZ,
        call_sid=CA,
        account_sid=AC,
        tracks=("inbound",),
        custom_parameters={"token": "abc", "agent": "7"},
        media_format=TWILIO_FORMAT,
        sequence_number=1,
    )
    payload = bytes(range(160))
    media = parse_inbound(
        frame(
            {
                "event": "media",
                "sequenceNumber": "3",
                "streamSid": MZ,
                "media": {
                    "track": "inbound",
                    "chunk": "2",
                    "timestamp": "40",
                    "payload": base64.b64encode(payload).decode(),
                },
            }
        )
    )
    assert media == Media(MZ, payload, "inbound", 2, 40, 3)
    assert parse_inbound(
        frame({"event": "dtmf", "streamSid": MZ, "dtmf": {"track": "inbound_track", "digit": "5"}})
    ) == Dtmf(MZ, "5", "inbound_track")
    assert parse_inbound(frame({"event": "mark", "streamSid": MZ, "mark": {"name": "m-7"}})) == (
        Mark(MZ, "m-7")
    )
    assert parse_inbound(
        frame({"event": "stop", "streamSid": MZ, "stop": {"accountSid": AC, "callSid": CA}})
    ) == Stop(MZ, AC, CA)


def test_outbound_frames_are_compact_and_documented() -> None:
    assert twilio.encode_clear(MZ) == f'{{"event":"clear","streamSid":"{MZ}"}}'
    assert twilio.encode_mark(MZ, "m-7") == (
        f'{{"event":"mark","streamSid":"{MZ}","mark":{{"name":"m-7"}}}}'
    )
    assert json.loads(twilio.encode_media(MZ, b"\xff\x00")) == {
        "event": "media",
        "streamSid": MZ,
        "media": {"payload": "/wA="},
    }


def test_encode_audio_splits_into_20ms_multiples() -> None:
    audio = bytes(range(256)) * 3  # 768 bytes = 96 ms of mu-law
    frames = twilio.encode_audio(MZ, audio)
    sizes = [len(base64.b64decode(json.loads(f)["media"]["payload"])) for f in frames]
    assert sizes == [160, 160, 160, 160, 128]
    big = twilio.encode_audio(MZ, audio, frame_ms=60)
    assert [len(parse_outbound(f).payload) for f in big] == [480, 288]  # type: ignore[union-attr]
    assert twilio.encode_audio(MZ, b"") == []
    with pytest.raises(ValueError):
        twilio.encode_audio(MZ, audio, frame_ms=30)


def test_start_without_custom_parameters_has_none() -> None:
    obj = _start()
    del obj["start"]["customParameters"]  # type: ignore[attr-defined]
    start = parse_inbound(frame(obj))
    assert isinstance(start, Start) and start.custom_parameters == {}


def test_media_format_maps_to_audio_format() -> None:
    text = twilio.encode_start(
        stream_sid=MZ, call_sid=CA, account_sid=AC, media_format=AudioFormat(Encoding.ALAW, 8000)
    )
    start = parse_inbound(text)
    assert isinstance(start, Start)
    assert start.media_format == AudioFormat(Encoding.ALAW, 8000)


# -- strict rejection -----------------------------------------------------------------


def _start(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "streamSid": MZ,
        "accountSid": AC,
        "callSid": CA,
        "tracks": ["inbound"],
        "customParameters": {},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    body.update(overrides)
    return {"event": "start", "streamSid": MZ, "start": body}


def _media(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {"track": "inbound", "chunk": "1", "timestamp": "0", "payload": ""}
    body.update(overrides)
    return {"event": "media", "streamSid": MZ, "media": body}


@pytest.mark.parametrize(
    ("text", "fatal", "needle"),
    [
        ("not json", True, "not JSON"),
        ("[1, 2]", True, "JSON object"),
        ('{"event": 3}', True, "no event"),
        ("{}", True, "no event"),
        ('{"event": "connected"}', True, "protocol is missing"),
        ('{"event": "teleport", "streamSid": "MZ1"}', False, "unknown event"),
        (frame(_start(callSid=5)), True, "callSid must be a string"),
        (frame(_start(callSid="CA 1")), True, "not a valid SID"),
        (frame(_start(streamSid="MZother")), True, "differs"),
        (frame(_start(tracks="inbound")), True, "tracks"),
        (frame(_start(customParameters={"k": 1})), True, "string value"),
        (
            frame(_start(mediaFormat={"encoding": "audio/ogg", "sampleRate": 8000, "channels": 1})),
            True,
            "unsupported media encoding",
        ),
        (
            frame(
                _start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 7, "channels": 1})
            ),
            True,
            "sample rate",
        ),
        (
            frame(_start(mediaFormat={"encoding": "audio/x-mulaw", "sampleRate": 8000})),
            True,
            "channels is missing",
        ),
        (frame(_media(payload="***")), False, "base64"),
        (frame(_media(payload="AAA")), False, "base64"),
        (frame(_media(chunk="-1")), False, "non-negative integer"),
        (frame(_media(chunk="\uff11")), False, "non-negative integer"),  # a full-width digit
        (frame(_media(timestamp=True)), False, "non-negative integer"),
        (frame(_media(timestamp=2**60)), False, "out of range"),
        (frame({"event": "media", "streamSid": MZ}), False, "media is missing"),
        (frame({"event": "media", "streamSid": MZ, "media": []}), False, "must be an object"),
        (
            frame({"event": "dtmf", "streamSid": MZ, "dtmf": {"track": "t", "digit": "x"}}),
            False,
            "not one of",
        ),
        (
            frame({"event": "dtmf", "streamSid": MZ, "dtmf": {"track": "t", "digit": "12"}}),
            False,
            "not one of",
        ),
        (frame({"event": "mark", "streamSid": MZ, "mark": {"name": ""}}), False, "empty"),
        (frame({"event": "stop", "streamSid": MZ, "stop": {}}), False, "accountSid"),
        ("[" * 100_000, True, "exceeds"),
        ("[" * 50_000 + "]" * 50_000, True, "exceeds"),
    ],
)
def test_rejects_malformed_frames(text: str, fatal: bool, needle: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_inbound(text)
    assert info.value.fatal is fatal
    assert needle in str(info.value)


def test_a_media_payload_between_the_caps_is_rejected_but_survivable() -> None:
    payload = base64.b64encode(bytes(twilio.MAX_PAYLOAD_BYTES + 1)).decode()
    text = frame(_media(payload=payload))
    assert len(text) < MAX_FRAME_CHARS
    with pytest.raises(ProtocolError, match="exceeds") as info:
        parse_inbound(text)
    assert not info.value.fatal


def test_binary_frames_and_deep_nesting_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        parse_inbound(b'{"event":"connected"}')
    with pytest.raises(ProtocolError, match="not JSON"):
        parse_inbound("[" * 30_000 + "]" * 30_000)


# -- properties -----------------------------------------------------------------------

sids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
counters = st.integers(min_value=0, max_value=2**53 - 1)
names = st.text(min_size=1, max_size=256)


@given(
    stream_sid=sids,
    call_sid=sids,
    account_sid=sids,
    params=st.dictionaries(st.text(max_size=256), st.text(max_size=1024), max_size=8),
    fmt=st.sampled_from(
        [TWILIO_FORMAT, AudioFormat(Encoding.ALAW, 8000), AudioFormat(Encoding.PCM16, 16000)]
    ),
    seq=counters,
)
def test_start_round_trips(
    stream_sid: str,
    call_sid: str,
    account_sid: str,
    params: dict[str, str],
    fmt: AudioFormat,
    seq: int,
) -> None:
    text = twilio.encode_start(
        stream_sid=stream_sid,
        call_sid=call_sid,
        account_sid=account_sid,
        custom_parameters=params,
        media_format=fmt,
        sequence_number=seq,
    )
    assert parse_inbound(text) == Start(
        stream_sid, call_sid, account_sid, ("inbound",), params, fmt, seq
    )


@given(
    sid=sids,
    payload=st.binary(max_size=twilio.MAX_PAYLOAD_BYTES // 4),
    chunk=counters,
    ts=counters,
    seq=counters,
)
def test_inbound_media_round_trips(sid: str, payload: bytes, chunk: int, ts: int, seq: int) -> None:
    text = twilio.encode_inbound_media(
        stream_sid=sid, payload=payload, chunk=chunk, timestamp=ts, sequence_number=seq
    )
    assert parse_inbound(text) == Media(sid, payload, "inbound", chunk, ts, seq)


@given(sid=sids, name=names, digit=st.sampled_from(sorted(twilio.DTMF_DIGITS)), seq=counters)
def test_events_round_trip(sid: str, name: str, digit: str, seq: int) -> None:
    assert parse_inbound(twilio.encode_dtmf(stream_sid=sid, digit=digit, sequence_number=seq)) == (
        Dtmf(sid, digit, "inbound_track", seq)
    )
    assert parse_inbound(
        twilio.encode_mark_echo(stream_sid=sid, name=name, sequence_number=seq)
    ) == Mark(sid, name, seq)
    assert parse_inbound(
        twilio.encode_stop(stream_sid=sid, account_sid=sid, call_sid=sid, sequence_number=seq)
    ) == Stop(sid, sid, sid, seq)
    assert parse_outbound(twilio.encode_mark(sid, name)) == OutboundMark(sid, name)
    assert parse_outbound(twilio.encode_clear(sid)) == Clear(sid)


@given(sid=sids, audio=st.binary(max_size=4000), frame_ms=st.sampled_from([20, 40, 100]))
def test_outbound_audio_round_trips(sid: str, audio: bytes, frame_ms: int) -> None:
    frames = [parse_outbound(f) for f in twilio.encode_audio(sid, audio, frame_ms=frame_ms)]
    assert all(isinstance(f, OutboundMedia) and f.stream_sid == sid for f in frames)
    assert b"".join(f.payload for f in frames if isinstance(f, OutboundMedia)) == audio


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
event_names = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "clear", "x"])


@st.composite
def near_frames(draw: st.DrawFn) -> str:
    """JSON objects shaped like real frames, with fields swapped for arbitrary values."""
    base = draw(
        st.sampled_from(
            [
                _start(),
                _media(payload="AAAA"),
                {"event": "dtmf", "streamSid": MZ, "dtmf": {"track": "t", "digit": "1"}},
                {"event": "mark", "streamSid": MZ, "mark": {"name": "m"}},
                {"event": "stop", "streamSid": MZ, "stop": {"accountSid": AC, "callSid": CA}},
                {"event": "clear", "streamSid": MZ},
            ]
        )
    )
    obj = json.loads(json.dumps(base))
    inner_key = next((k for k in obj if isinstance(obj[k], dict)), None)
    target = obj[inner_key] if inner_key and draw(st.booleans()) else obj
    key = draw(st.sampled_from(sorted(target)))
    if draw(st.booleans()):
        del target[key]
    else:
        target[key] = draw(json_values)
    return json.dumps(obj)


@settings(max_examples=300)
@given(
    text=st.one_of(
        st.text(max_size=300), st.binary(max_size=100), near_frames(), json_values.map(json.dumps)
    )
)
def test_parsers_raise_only_protocol_errors(text: str | bytes) -> None:
    for parse in (parse_inbound, parse_outbound):
        try:
            parse(text)
        except ProtocolError as exc:
            assert exc.message


@given(data=st.dictionaries(event_names | st.text(max_size=8), json_values, max_size=6))
def test_parsers_raise_only_protocol_errors_on_objects(data: dict[str, object]) -> None:
    text = json.dumps(data)
    for parse in (parse_inbound, parse_outbound):
        with contextlib.suppress(ProtocolError):
            parse(text)


# -- marks ----------------------------------------------------------------------------


def test_mark_tracker_fifo_and_clear() -> None:
    marks = MarkTracker()
    for name in ("a", "b", "c"):
        marks.sent(name)
    assert marks.echoed("a") is MarkStatus.PLAYED
    assert marks.echoed("zzz") is MarkStatus.UNKNOWN
    marks.cleared()
    marks.sent("d")
    assert marks.outstanding == ("b", "c", "d")
    assert marks.echoed("b") is MarkStatus.CLEARED
    assert marks.echoed("c") is MarkStatus.CLEARED
    assert marks.echoed("d") is MarkStatus.PLAYED
    assert marks.echoed("d") is MarkStatus.UNKNOWN


def test_a_later_echo_settles_earlier_marks_and_the_fifo_is_bounded() -> None:
    marks = MarkTracker(max_outstanding=2)
    marks.sent("a")
    marks.sent("b")
    marks.sent("c")
    assert marks.dropped == 1
    assert marks.outstanding == ("b", "c")
    assert marks.echoed("c") is MarkStatus.PLAYED
    assert marks.outstanding == ()


@given(ops=st.lists(st.tuples(st.sampled_from(["sent", "echo", "clear"]), st.integers(0, 5))))
def test_mark_tracker_never_grows_past_its_bound(ops: list[tuple[str, int]]) -> None:
    marks = MarkTracker(max_outstanding=4)
    for op, n in ops:
        if op == "sent":
            marks.sent(f"m{n}")
        elif op == "echo":
            marks.echoed(f"m{n}")
        else:
            marks.cleared()
        assert len(marks.outstanding) <= 4


# -- the carrier output ---------------------------------------------------------------


async def test_twilio_output_frames_audio_marks_and_clears() -> None:
    sent: list[str] = []
    actions: list[str] = []

    async def send(text: str) -> None:
        sent.append(text)

    async def hangup() -> None:
        actions.append("hangup")

    async def transfer(to: str) -> None:
        actions.append(f"transfer {to}")

    output = twilio.TwilioOutput(stream_sid=MZ, send=send, hangup=hangup, transfer=transfer)
    await output.send_audio(bytes(400))
    await output.send_mark("m-1")
    await output.send_audio(bytes(160))
    await output.send_mark("m-2")
    await output.send_clear()
    await output.hangup()
    await output.transfer("+14155550100")
    commands = [parse_outbound(text) for text in sent]
    assert [type(c).__name__ for c in commands] == [
        "OutboundMedia",
        "OutboundMedia",
        "OutboundMedia",
        "OutboundMark",
        "OutboundMedia",
        "OutboundMark",
        "Clear",
    ]
    assert [len(c.payload) for c in commands if isinstance(c, OutboundMedia)] == [160, 160, 80, 160]
    assert output.mark_echoed("m-1") is MarkStatus.CLEARED
    assert output.mark_echoed("m-2") is MarkStatus.CLEARED
    assert actions == ["hangup", "transfer +14155550100"]
    with pytest.raises(ValueError):
        await output.send_mark("")


# -- one socket's stream --------------------------------------------------------------


def test_inbound_stream_checks_order_and_stream_ids() -> None:
    stream = twilio.InboundStream()
    media = twilio.encode_inbound_media(
        stream_sid=MZ, payload=b"\xff", chunk=1, timestamp=0, sequence_number=2
    )
    with pytest.raises(ProtocolError, match="media before start") as info:
        stream.parse(media)
    assert info.value.fatal
    assert isinstance(stream.parse(twilio.encode_connected()), Connected)
    start = twilio.encode_start(stream_sid=MZ, call_sid=CA, account_sid=AC)
    assert isinstance(stream.parse(start), Start)
    assert stream.start is not None and stream.start.call_sid == CA
    assert isinstance(stream.parse(media), Media)
    with pytest.raises(ProtocolError, match="second start") as info:
        stream.parse(start)
    assert info.value.fatal
    other = twilio.encode_mark_echo(stream_sid="MZother", name="m", sequence_number=3)
    with pytest.raises(ProtocolError, match="for stream MZother") as info:
        stream.parse(other)
    assert info.value.fatal
    with pytest.raises(ProtocolError, match="connected after start") as info:
        stream.parse(twilio.encode_connected())
    assert not info.value.fatal
    stop = twilio.encode_stop(stream_sid=MZ, account_sid=AC, call_sid=CA, sequence_number=4)
    assert isinstance(stream.parse(stop), Stop)
    with pytest.raises(ProtocolError, match="media after stop") as info:
        stream.parse(media)
    assert not info.value.fatal

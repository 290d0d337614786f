from __future__ import annotations

from voice.playback import Piece, Playback

BYTES_PER_MS = 8.0  # mu-law 8 kHz


def played(pb: Playback, texts: list[str], ms_each: int) -> list[str]:
    marks = []
    for i, text in enumerate(texts):
        pb.pushed(Piece(text, i % 2))
        pb.audio(int(ms_each * BYTES_PER_MS))
        mark = pb.boundary()
        assert mark is not None
        marks.append(mark)
    return marks


def test_echoed_marks_are_heard_and_the_current_chunk_is_proportional() -> None:
    pb = Playback(mark_prefix="t1-", bytes_per_ms=BYTES_PER_MS)
    marks = played(pb, ["First sentence here.", "Second one is longer than that."], 1000)
    assert pb.end() is None
    pb.first_audio_sent_ms = 0.0
    assert not pb.echoed(marks[0], 1000.0)
    heard = pb.heard(1500.0)
    assert [p.text for p in heard.pieces] == ["First sentence here.", "Second one is"]
    assert [p.message for p in heard.pieces] == [0, 1]
    assert not heard.complete
    assert pb.echoed(marks[1], 2000.0)
    assert pb.finished
    assert pb.heard(2000.0).complete


def test_nothing_is_heard_before_audio_is_sent() -> None:
    pb = Playback(mark_prefix="t1-", bytes_per_ms=BYTES_PER_MS)
    pb.pushed(Piece("Hello there.", 0))
    assert pb.heard(5000.0).pieces == []


def test_without_boundaries_one_final_mark_covers_everything() -> None:
    pb = Playback(mark_prefix="t2-", bytes_per_ms=BYTES_PER_MS)
    pb.pushed(Piece("One two three four.", 0))
    pb.pushed(Piece("Five six seven eight.", 0))
    pb.audio(int(2000 * BYTES_PER_MS))
    pb.first_audio_sent_ms = 0.0
    # still synthesizing: measured against a nominal speaking rate, whole words only
    mid = pb.heard(1000.0)
    assert 0 < len(" ".join(p.text for p in mid.pieces)) < 40
    mark = pb.end()
    assert mark == "t2-0" and not pb.finished
    heard = pb.heard(1000.0)
    assert [p.text for p in heard.pieces] == ["One two three four."]
    assert pb.echoed(mark, 2000.0) and pb.finished


def test_unknown_marks_are_ignored_and_unplayed_time_is_bounded() -> None:
    pb = Playback(mark_prefix="t3-", bytes_per_ms=BYTES_PER_MS)
    played(pb, ["Hi."], 500)
    pb.end()
    pb.first_audio_sent_ms = 100.0
    assert not pb.echoed("t9-0", 200.0)
    assert pb.unplayed_ms(200.0) == 400.0
    assert pb.unplayed_ms(10_000.0) == 0.0

"""The PocketSphinx decoder process behind one STT session (see ``pocketsphinx_stt``).

Run as a script by path, so it imports nothing from the project and needs no ``sys.path``
set-up. Protocol on stdin: frames of one opcode byte, a 4-byte big-endian length and a
payload: ``C`` sets the channel mean (ASCII), ``A`` feeds audio (PCM16 16 kHz; starts an
utterance if none is open), ``F`` finishes the utterance. On stdout: a 4-byte length and a
JSON object, once ``{"ready": true}`` after the model loads, then one
``{"text": ...}`` per ``F``. The decoder keeps its
running channel mean from one utterance to the next. End of stdin ends the process.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct(">cI")


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _reply(out: BinaryIO, message: dict[str, Any]) -> None:
    data = json.dumps(message).encode()
    out.write(struct.pack(">I", len(data)) + data)
    out.flush()


def main() -> None:
    # The protocol owns stdout; anything the C library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    stdin = sys.stdin.buffer

    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL")
    _reply(out, {"ready": True})
    in_utterance = False
    try:
        while True:
            op, size = _HEADER.unpack(_read_exact(stdin, _HEADER.size))
            payload = _read_exact(stdin, size)
            if op == b"C":
                decoder.set_cmn(payload.decode())
            elif op == b"A":
                if not in_utterance:
                    decoder.start_utt()
                    in_utterance = True
                # Not full_utt: that switches to a batch mean over this utterance alone, which
                # lost words ("computer" in "I need help with my computer"); the session's
                # running mean does better.
                decoder.process_raw(payload, False, False)
            elif op == b"F":
                text = ""
                if in_utterance:
                    decoder.end_utt()
                    in_utterance = False
                    hyp = decoder.hyp()
                    text = hyp.hypstr if hyp is not None else ""
                _reply(out, {"text": text})
    except EOFError:
        pass


if __name__ == "__main__":
    main()

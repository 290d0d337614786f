"""What the engine asks of the carrier connection.

A carrier adapter (e.g. the Twilio media-stream consumer) implements
:class:`CarrierOutput`; the engine calls it from its own tasks. Audio is already in
``CallConfig.carrier_format``, in chunks of any size; the adapter frames it for the wire.
"""

from __future__ import annotations

from typing import Protocol


class CarrierOutput(Protocol):
    async def send_audio(self, payload: bytes) -> None: ...

    async def send_mark(self, name: str) -> None:
        """Ask to be told (via ``Conversation.mark_played``) when audio so far has played."""

    async def send_clear(self) -> None:
        """Drop audio buffered at the carrier (barge-in)."""

    async def hangup(self) -> None: ...

    async def transfer(self, to: str) -> None: ...

"""Glassbox's real-time conversation engine.

Pure asyncio. Nothing in this package imports Django: the platform hands the engine a
frozen :class:`voice.config.CallConfig`, feeds it caller audio, and receives events
through a :class:`voice.events.Sink` and carrier commands through a
:class:`voice.transport.CarrierOutput`.
"""

"""Talk-back on both sides.

Camera side: :class:`TalkBackPlayer` reads the audio track an app negotiated on a live
session's peer connection and hands its frames to an :class:`AudioSink` (the speaker)
only while a talk-back the camera verified runs (``SessionGate.check_talk``, until its
end, its expiry or the session's) and the camera is not private (given its
``CameraPrivacy``, the player looks at every frame, so a schedule's window silences the
speaker at its first minute even before ``PrivacyEnforcer`` has ended the session).
Everything else the track brings is discarded and counted: an app cannot make the
camera speak by sending audio unasked, and neither can a platform that skipped the log.
:class:`MemorySink` keeps what was played, for tests and demos.

App side: :func:`start_talk_back` / :func:`end_talk_back` (RelayBrokerService), for the
viewer of a live session whose offer carried an audio track.

Frames are whatever the WebRTC stack yields (aiortc's ``av.AudioFrame``); nothing here
imports it, so firmware ports keep their own media stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam_sdk.camera import LoggedTalk
from privacam_sdk.privacy import CameraPrivacy


class AudioTrack(Protocol):
    def recv(self) -> Awaitable[Any]:
        """The next frame; raises (aiortc: MediaStreamError) when the track ends."""
        ...


class AudioSink(Protocol):
    def play(self, frame: Any) -> None: ...


@dataclass
class Played:
    """One frame the sink played, and when (time.monotonic())."""

    at: float
    frame: Any


@dataclass
class MemorySink:
    """A speaker that keeps what it played (tests read ``frames``)."""

    frames: list[Played] = field(default_factory=list)

    def play(self, frame: Any) -> None:
        self.frames.append(Played(time.monotonic(), frame))


class TalkBackPlayer:
    """The gate between one session's received audio and the camera's speaker."""

    def __init__(self, sink: AudioSink, privacy: CameraPrivacy | None = None) -> None:
        self._sink = sink
        self._privacy = privacy
        self._talk: LoggedTalk | None = None
        self.played = 0
        self.discarded = 0
        """Frames received while no verified talk-back ran: not played."""
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def talk(self) -> LoggedTalk | None:
        return self._talk

    def start(self, talk: LoggedTalk) -> None:
        """Play from now on: ``talk`` is what SessionGate.check_talk returned."""
        self._talk = talk
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self._talk is not None:
            self.ended_at = time.monotonic()
        self._talk = None

    def _playing(self) -> bool:
        talk = self._talk
        if talk is not None:
            now = datetime.now(UTC)
            if now >= talk.expires_at:
                self.stop()  # expired without a TalkEnded: stop anyway
            elif self._privacy is not None and self._privacy.private_reason(now) is not None:
                self.stop()  # turned private: the talk-back is over
        return self._talk is not None

    def attach(self, track: AudioTrack) -> None:
        """Read ``track`` until it ends (call when the peer connection reports it)."""
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: AudioTrack) -> None:
        with contextlib.suppress(Exception):  # the track ends when the session does
            while True:
                frame = await track.recv()
                if self._playing():
                    self.played += 1
                    self._sink.play(frame)
                else:
                    self.discarded += 1

    async def close(self) -> None:
        self.stop()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


async def start_talk_back(
    stub: pb_grpc.RelayBrokerServiceAsyncStub, session_id: str, pin: str = ""
) -> pb.StartTalkBackResponse:
    """Ask to speak in a live session the caller views (the camera plays once it has
    verified the log's entry, a few hundred milliseconds at most)."""
    return await stub.StartTalkBack(pb.StartTalkBackRequest(session_id=session_id, pin=pin))


async def end_talk_back(
    stub: pb_grpc.RelayBrokerServiceAsyncStub, session_id: str
) -> pb.EndTalkBackResponse:
    return await stub.EndTalkBack(pb.EndTalkBackRequest(session_id=session_id))

"""A camera and a viewer that speak real WebRTC (aiortc): DTLS-SRTP media, ICE, TURN.

They know nothing of gRPC: the tests and benchmarks carry their SDP and signed
fingerprints over the broker's Signal streams. The camera sends synthetic VP8
video; the viewer decodes it and records when the first frame arrived. For
talk-back the viewer may send an audio track too (a tone, or a WAV file through
aiortc's MediaPlayer) in the same offer; the camera hands the track it receives
to whoever plays it (privacam_sdk.talk_back.TalkBackPlayer). With
`relay_only`, both ICE agents gather only TURN relay candidates and the SDP keeps
only `typ relay` lines, so every packet must pass through coturn.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aioice import Connection, stun
from aioice.ice import CandidatePair, StunProtocol
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from av import AudioFrame, VideoFrame
from cryptography.hazmat.primitives.asymmetric import ec

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_pb2
from privacam_sdk.live_view import sdp_fingerprints, sign_dtls_fingerprint

_CANDIDATE = re.compile(r"^a=candidate:.*$", re.MULTILINE)
_OTHER_FINGERPRINTS = re.compile(r"^a=fingerprint:(?!sha-256 )[^\r\n]*\r\n", re.MULTILINE)


def only_relay_candidates(sdp: str) -> str:
    """The SDP without any candidate line that is not `typ relay`."""
    return _CANDIDATE.sub(lambda m: m.group(0) if " typ relay" in m.group(0) else "", sdp).replace(
        "\r\n\r\n", "\r\n"
    )


def candidate_types(sdp: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r" typ (\w+)", sdp)}


def ice_servers(turn: relay_pb2.TurnCredentials) -> list[RTCIceServer]:
    """aiortc's ICE servers from the broker's TURN credentials (UDP URIs only: aioice's
    TURN-over-TCP needs a TCP relay path the loopback tests do not need)."""
    urls = [uri for uri in turn.uris if uri.startswith("turn:") and "transport=tcp" not in uri]
    return [RTCIceServer(urls=urls, username=turn.username, credential=turn.password)]


class SyntheticCamera(VideoStreamTrack):
    """Small frames whose brightness changes, so every frame is a real encoded picture."""

    def __init__(self, width: int = 160, height: int = 120) -> None:
        super().__init__()
        self._frame = VideoFrame(width=width, height=height, format="yuv420p")
        self._count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        self._count += 1
        for plane in self._frame.planes:
            plane.update(bytes([(self._count * 8) % 256]) * plane.buffer_size)
        self._frame.pts = pts
        self._frame.time_base = fractions.Fraction(time_base)
        return self._frame


class ToneTrack(AudioStreamTrack):
    """A sine tone (48 kHz mono, 20 ms frames) in real time: what a test app says."""

    RATE = 48_000
    SAMPLES = 960

    def __init__(self, frequency: float = 440.0, amplitude: int = 12_000) -> None:
        super().__init__()
        self.frequency = frequency
        self._amplitude = amplitude
        self._sent = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._sent:
            wait = self._start + self._sent / self.RATE - time.time()
            await asyncio.sleep(wait)
        else:
            self._start = time.time()
        step = 2 * math.pi * self.frequency / self.RATE
        pcm = b"".join(
            int(self._amplitude * math.sin(step * (self._sent + i))).to_bytes(
                2, "little", signed=True
            )
            for i in range(self.SAMPLES)
        )
        frame = AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(pcm)
        frame.pts = self._sent
        frame.sample_rate = self.RATE
        frame.time_base = fractions.Fraction(1, self.RATE)
        self._sent += self.SAMPLES
        return frame


def retrigger_in_progress_checks(pc: RTCPeerConnection) -> None:
    """Answer a peer's check on a pair whose own check is in flight by re-sending ours now.

    RFC 8445 section 7.3.1.4 asks for a triggered check in that case; aioice 0.13 only
    triggers checks of frozen, failed or waiting pairs. Through TURN it matters: the
    camera's first check reaches the app's relay before the app has a permission for
    it, so coturn drops it, and the camera would wait for the 500 ms retransmission
    although the app's check has just come through. libwebrtc, in real cameras and
    apps, does this already; this gives the test peers the same behaviour. The resent
    request keeps its transaction id, so its answer settles the check in flight.
    """
    for transceiver in pc.getTransceivers():
        connection = transceiver.receiver.transport.transport._connection
        if not getattr(connection, "_privacam_retriggers", False):
            _retrigger(connection)


def _retrigger(connection: Connection) -> None:
    in_flight: dict[int, stun.Message] = {}
    build_request = connection.build_request
    check_incoming = connection.check_incoming

    def recording_build_request(pair: CandidatePair, nominate: bool) -> stun.Message:
        request = build_request(pair, nominate=nominate)
        in_flight[id(pair)] = request
        return request

    def retriggering_check_incoming(
        message: stun.Message, addr: tuple[str, int], protocol: StunProtocol
    ) -> None:
        check_incoming(message, addr, protocol)
        for pair in connection._check_list:
            if (
                pair.protocol is protocol
                and pair.remote_addr == addr
                and pair.state == CandidatePair.State.IN_PROGRESS
                and id(pair) in in_flight
            ):
                protocol.send_stun(in_flight[id(pair)], addr)

    connection.build_request = recording_build_request  # type: ignore[method-assign]
    connection.check_incoming = retriggering_check_incoming  # type: ignore[method-assign]
    connection._privacam_retriggers = True  # type: ignore[attr-defined]


def _configuration(servers: Sequence[RTCIceServer], relay_only: bool) -> RTCConfiguration:
    return RTCConfiguration(
        iceServers=list(servers),
        iceTransportPolicy=RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL,
    )


@dataclass
class CameraPeer:
    """The camera's side: answers an offer, sends video, signs its DTLS fingerprint."""

    key: ec.EllipticCurvePrivateKey
    chain_der: list[bytes]
    servers: Sequence[RTCIceServer] = ()
    relay_only: bool = False
    on_audio: Callable[[MediaStreamTrack], None] | None = None
    """Given the app's audio track (talk-back), if its offer carries one."""
    pc: RTCPeerConnection = field(init=False)

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(_configuration(self.servers, self.relay_only))
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.on_audio is not None:
            self.on_audio(track)

    async def answer(self, session_id: str, offer_sdp: str) -> tuple[str, pb.SignedDtlsFingerprint]:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        retrigger_in_progress_checks(self.pc)
        self.pc.addTrack(SyntheticCamera())
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        sdp = self.pc.localDescription.sdp
        if self.relay_only:
            sdp = only_relay_candidates(sdp)
        # aiortc lists sha-256/384/512; keep the one the camera signs, so the app can
        # demand that the answer names no fingerprint but the signed one.
        sdp = _OTHER_FINGERPRINTS.sub("", sdp)
        ((algorithm, fingerprint),) = sdp_fingerprints(sdp)
        signed = sign_dtls_fingerprint(self.key, self.chain_der, session_id, algorithm, fingerprint)
        return sdp, signed

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class ViewerPeer:
    """The app's side: offers to receive video, accepts an answer, decodes frames."""

    servers: Sequence[RTCIceServer] = ()
    relay_only: bool = False
    audio: MediaStreamTrack | None = None
    """Talk-back: sent from the start, in the same offer; the camera plays it only while
    a talk-back it verified runs."""
    pc: RTCPeerConnection = field(init=False)
    first_frame_at: asyncio.Future[float] = field(init=False)
    frames: int = 0
    _reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.pc = RTCPeerConnection(_configuration(self.servers, self.relay_only))
        self.first_frame_at = asyncio.get_running_loop().create_future()
        self.pc.addTransceiver("video", direction="recvonly")
        if self.audio is not None:
            self.pc.addTransceiver(self.audio, direction="sendonly")
        retrigger_in_progress_checks(self.pc)
        self.pc.on("track", self._on_track)

    def _on_track(self, track: object) -> None:
        self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: object) -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                frame = await track.recv()  # type: ignore[attr-defined]
                if isinstance(frame, VideoFrame):
                    self.frames += 1
                    if not self.first_frame_at.done():
                        self.first_frame_at.set_result(time.perf_counter())

    async def offer(self) -> str:
        """The offer, naming only the sha-256 fingerprint (the one the app signs)."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        sdp: str = self.pc.localDescription.sdp
        if self.relay_only:
            sdp = only_relay_candidates(sdp)
        return _OTHER_FINGERPRINTS.sub("", sdp)

    async def accept(self, answer_sdp: str) -> None:
        """Only after the caller verified the camera's signed fingerprint."""
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    def selected_candidate_types(self) -> tuple[str, str] | None:
        """(local, remote) candidate types of the pair ICE chose, e.g. ("host", "host")."""
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            pair = getattr(ice._connection, "_nominated", {})  # aioice keeps it per component
            for candidate_pair in pair.values():
                return candidate_pair.local_candidate.type, candidate_pair.remote_candidate.type
        return None

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        await self.pc.close()

"""`privacam talk <camera> --wav FILE | --mic DEVICE`: speak through a camera.

Opens a live view (StartLiveView, Signal, both signed DTLS fingerprints checked) whose
first offer carries an audio track, then StartTalkBack: the camera plays the audio once
it has verified the log's entry. Until then the track sends silence, so the start of the
file is not lost to the camera's gate. Ends with EndTalkBack and EndLiveView.

Needs aiortc (a development dependency of this repository, not of the SDK's runtime):
it is imported only when this command runs. A microphone is opened through FFmpeg
(aiortc's MediaPlayer, e.g. `--mic default --mic-format pulse` or `--mic hw:0 --mic-format
alsa`); no other audio library is used. A source that cannot be opened (no such
microphone, an FFmpeg built without that input format, a missing or unreadable file) is
reported with what to try instead, exit status 2, before anything is asked of the
platform.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.relay.v1 import relay_broker_service_pb2 as pb
from privacam.relay.v1 import relay_broker_service_pb2_grpc as pb_grpc
from privacam_sdk.cli_common import camera_pin
from privacam_sdk.client import PrivacamClient
from privacam_sdk.live_view import (
    Signer,
    sdp_fingerprints,
    sign_dtls_fingerprint,
    verify_camera_fingerprint,
)
from privacam_sdk.profile import Profile
from privacam_sdk.streams import close_stream
from privacam_sdk.talk_back import end_talk_back, start_talk_back

_OTHER_FINGERPRINTS = re.compile(r"^a=fingerprint:(?!sha-256 )[^\r\n]*\r\n", re.MULTILINE)
RATE, SAMPLES = 48_000, 960  # what the Opus encoder wants: no resampling mid-stream


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    talk = commands.add_parser(
        "talk",
        help="speak through a camera (talk-back, inside a live view)",
        description=(
            "Speak through a camera's speaker. Needs aiortc installed; a microphone is "
            "read through FFmpeg (aiortc's MediaPlayer), no other audio library."
        ),
    )
    talk.add_argument("device", help="camera id")
    source = talk.add_mutually_exclusive_group(required=True)
    source.add_argument("--wav", help="a WAV (or any FFmpeg-readable) file to play")
    source.add_argument("--mic", help="an input device, e.g. 'default' (with --mic-format)")
    talk.add_argument("--mic-format", default="pulse", help="FFmpeg input format: pulse, alsa…")
    talk.add_argument(
        "--ask-pin",
        action="store_true",
        help="prompt for the camera's PIN (or set PRIVACAM_PIN); never given as an argument",
    )
    talk.add_argument("--seconds", type=float, default=0, help="stop after this long (0: at EOF)")


def _key_and_chain(profile: Profile) -> tuple[ec.EllipticCurvePrivateKey, list[bytes]]:
    key = load_pem_private_key(profile.key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise SystemExit("privacam: the profile's key is not an EC key")
    chain = x509.load_pem_x509_certificates(profile.cert_file.read_bytes())
    return key, [c.public_bytes(Encoding.DER) for c in chain]


async def run(args: argparse.Namespace, profile: Profile) -> int:
    try:
        from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaPlayer
    except ImportError:
        print("privacam: talk needs aiortc (pip install aiortc==1.16.0)", file=sys.stderr)
        return 2
    try:
        player = (
            MediaPlayer(args.wav) if args.wav else MediaPlayer(args.mic, format=args.mic_format)
        )
    except (OSError, ValueError) as error:  # FFmpeg's errors are OSErrors (av.error)
        print(f"privacam: {_unopened(args, error)}", file=sys.stderr)
        return 2
    if player.audio is None:
        what = f"the file {args.wav}" if args.wav else f"the microphone {args.mic!r}"
        print(f"privacam: {what} has no audio", file=sys.stderr)
        return 2
    gate = _gated_track(player.audio)
    pin = await camera_pin(args.ask_pin)
    async with PrivacamClient(profile, timeout=10) as client:
        stub = pb_grpc.RelayBrokerServiceStub(client.channel("relay_broker"))
        camera = await client.device_auth().GetCamera(
            identity_pb.GetCameraRequest(device_id=args.device)
        )
        started = await stub.StartLiveView(pb.StartLiveViewRequest(device_id=args.device, pin=pin))
        sid = started.session_id
        servers = [
            RTCIceServer(
                urls=[u for u in started.turn.uris if u.startswith("turn:")],
                username=started.turn.username,
                credential=started.turn.password,
            )
        ]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        call: Any = stub.Signal()  # type: ignore[call-arg]
        try:
            await call.write(pb.SignalRequest(join=pb.SignalJoin(session_id=sid)))
            first = await asyncio.wait_for(call.read(), 20)
            if not first.HasField("peer_joined"):
                print("privacam: the camera did not join the live view", file=sys.stderr)
                return 1
            pc.addTransceiver("video", direction="recvonly")
            pc.addTransceiver(gate, direction="sendonly")
            await pc.setLocalDescription(await pc.createOffer())
            offer = _OTHER_FINGERPRINTS.sub("", pc.localDescription.sdp)
            key, chain = _key_and_chain(profile)
            ((algorithm, fingerprint),) = sdp_fingerprints(offer)
            signed = sign_dtls_fingerprint(key, chain, sid, algorithm, fingerprint, Signer.APP)
            description = pb.SessionDescription(type=pb.SDP_TYPE_OFFER, sdp=offer)
            await call.write(pb.SignalRequest(signal=pb.SignalMessage(description=description)))
            await call.write(pb.SignalRequest(signal=pb.SignalMessage(fingerprint=signed)))
            answer, proof = await _answer(call)
            verify_camera_fingerprint(
                proof,
                session_id=sid,
                device_id=args.device,
                answer_sdp=answer,
                trusted_ca_pem=profile.ca_file.read_bytes(),
                trust_domain=profile.trust_domain,
                now=datetime.now(UTC),
                pinned_key_sha256=camera.camera.key_sha256,
            )
            await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
            await start_talk_back(stub, sid, pin)
            gate.open()
            began = time.monotonic()
            print(f"speaking through {args.device} (session {sid}); Ctrl-C to stop")
            with contextlib.suppress(asyncio.CancelledError, KeyboardInterrupt):
                while not gate.finished:
                    if args.seconds and time.monotonic() - began >= args.seconds:
                        break
                    await asyncio.sleep(0.1)
            ended = await end_talk_back(stub, sid)
            print(f"stopped after {ended.duration.ToTimedelta().total_seconds():.1f} s")
            await stub.EndLiveView(pb.EndLiveViewRequest(session_id=sid))
            return 0
        finally:
            await close_stream(call)  # ends grpc's request pump too (privacam_sdk.streams)
            await pc.close()


def _unopened(args: argparse.Namespace, error: OSError | ValueError) -> str:
    """Why the audio source did not open, for people, and what to try instead."""
    reason = getattr(error, "strerror", None) or str(error)
    if args.wav:
        return f"cannot read the audio file {args.wav}: {reason}"
    return (
        f"no microphone available as {args.mic!r} (FFmpeg input format "
        f"{args.mic_format!r}): {reason}. Name another with --mic and --mic-format "
        "(e.g. --mic hw:0 --mic-format alsa), or speak from a file with --wav FILE"
    )


async def _answer(call: Any) -> tuple[str, pb.SignedDtlsFingerprint]:
    answer: str | None = None
    proof: pb.SignedDtlsFingerprint | None = None
    async with asyncio.timeout(20):
        while answer is None or proof is None:
            response = await call.read()
            if response.HasField("session_closed"):
                raise SystemExit("privacam: the camera declined the live view")
            if response.signal.HasField("description"):
                answer = response.signal.description.sdp
            elif response.signal.HasField("fingerprint"):
                proof = response.signal.fingerprint
    return answer, proof


def _gated_track(source: Any) -> Any:
    """An audio track sending silence until open(), then ``source`` (resampled to 48 kHz
    stereo, so the encoder sees one format throughout); ``finished`` once it ran out."""
    from aiortc import AudioStreamTrack
    from aiortc.mediastreams import MediaStreamError
    from av import AudioFrame, AudioResampler

    class Gated(AudioStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self._open = False
            self.finished = False
            self._resampler = AudioResampler(format="s16", layout="stereo", rate=RATE)
            self._pending: list[AudioFrame] = []
            self._pts = 0
            self._start = 0.0

        def open(self) -> None:
            self._open = True

        async def recv(self) -> AudioFrame:
            if self._open and not self.finished:
                while not self._pending:
                    try:
                        self._pending = list(self._resampler.resample(await source.recv()))
                    except MediaStreamError:
                        self.finished = True
                        break
                if self._pending:
                    frame = self._pending.pop(0)
                    frame.pts, self._pts = self._pts, self._pts + frame.samples
                    return frame
            if self._pts:  # silence in real time (the source paces itself)
                await asyncio.sleep(max(0.0, self._start + self._pts / RATE - time.time()))
            else:
                self._start = time.time()
            frame = AudioFrame(format="s16", layout="stereo", samples=SAMPLES)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = RATE
            frame.time_base = fractions.Fraction(1, RATE)
            frame.pts, self._pts = self._pts, self._pts + SAMPLES
            return frame

    return Gated()

"""`privacam talk` without a usable audio source: a clear error, exit status 2, and nothing
asked of the platform (the profile is never touched). This machine has no microphone,
like most CI runners."""

from __future__ import annotations

import argparse
import math
import struct
import wave
from pathlib import Path

import pytest

from privacam_sdk import talk_cli


def _args(**given: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "device": "00000000-0000-4000-8000-000000000000",
        "wav": None,
        "mic": None,
        "mic_format": "pulse",
        "ask_pin": False,
        "seconds": 0.0,
    }
    return argparse.Namespace(**(defaults | given))


class Untouchable:
    """A profile that fails the test if the command reaches for the platform."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the command used the profile ({name}) before its source opened")


@pytest.mark.parametrize(
    ("mic", "mic_format"),
    [
        ("default", "pulse"),  # the default: an FFmpeg without PulseAudio input
        ("hw:7", "alsa"),  # ALSA, no such card
        ("nonexistent-device", "oss"),
    ],
)
async def test_no_microphone_is_a_clear_error(
    mic: str, mic_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await talk_cli.run(_args(mic=mic, mic_format=mic_format), Untouchable())  # type: ignore[arg-type]
    assert code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(f"privacam: no microphone available as {mic!r}")
    assert f"FFmpeg input format {mic_format!r}" in out.err
    assert "--wav FILE" in out.err  # says what to do instead
    assert "Traceback" not in out.err


async def test_a_missing_or_silent_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "hello.wav"
    assert await talk_cli.run(_args(wav=str(missing)), Untouchable()) == 2  # type: ignore[arg-type]
    assert capsys.readouterr().err.startswith(
        f"privacam: cannot read the audio file {missing}: No such file or directory"
    )
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("not a sound\n" * 100)
    assert await talk_cli.run(_args(wav=str(not_audio)), Untouchable()) == 2  # type: ignore[arg-type]
    assert capsys.readouterr().err == f"privacam: the file {not_audio} has no audio\n"


def test_a_wav_file_opens_as_the_source(tmp_path: Path) -> None:
    """The file path the command takes when there is no microphone: FFmpeg reads it, and
    the gate resamples it to the 48 kHz stereo the Opus encoder wants (sent end to end
    through a camera in tests/integration/test_talk_back.py)."""
    from aiortc.contrib.media import MediaPlayer

    path = tmp_path / "tone.wav"
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * n / 16_000)))
                for n in range(16_000)
            )
        )
    player = MediaPlayer(str(path))
    assert player.audio is not None
    assert talk_cli._gated_track(player.audio) is not None

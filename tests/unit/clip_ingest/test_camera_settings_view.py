"""The upload-settings view remembers only "alerts on", briefly, and forgets on events."""

from __future__ import annotations

import time

from privacam.identity.v1 import events_pb2 as identity_events
from services.clip_ingest.domain.model import CameraSettings, Viewer
from services.clip_ingest.streams.camera_settings import CameraSettingsView
from services.common.settings import KafkaSettings


class Asked:
    def __init__(self) -> None:
        self.settings = {"cam": CameraSettings(True, 7)}
        self.calls = 0
        self.during_call: object = None

    async def upload_settings(self, device_id: str) -> CameraSettings:
        self.calls += 1
        if callable(self.during_call):
            self.during_call()
        return self.settings[device_id]

    async def authorize_viewer(self, device_id: str, check_pin: bool, pin: str) -> Viewer:
        raise AssertionError("not used")


def view(ttl: float = 30.0) -> tuple[CameraSettingsView, Asked]:
    inner = Asked()
    settings = KafkaSettings(bootstrap_servers="127.0.0.1:9", security_protocol="PLAINTEXT")
    made = CameraSettingsView(inner, settings, None, ttl)  # type: ignore[arg-type]
    made._last_poll = time.monotonic()  # the follower is reading
    return made, inner


def changed(device: str) -> identity_events.IdentityEvent:
    return identity_events.IdentityEvent(
        camera_settings_changed=identity_events.CameraSettingsChanged(device_id=device)
    )


async def test_on_is_remembered_until_an_event_says_otherwise() -> None:
    cameras, inner = view()
    assert (await cameras.upload_settings("cam")).alerts_enabled
    assert (await cameras.upload_settings("cam")).alerts_enabled
    assert inner.calls == 1
    inner.settings["cam"] = CameraSettings(False, 7)
    cameras.apply(changed("cam"))
    assert not (await cameras.upload_settings("cam")).alerts_enabled
    assert inner.calls == 2


async def test_off_is_never_remembered() -> None:
    cameras, inner = view()
    inner.settings["cam"] = CameraSettings(False, 7)
    await cameras.upload_settings("cam")
    inner.settings["cam"] = CameraSettings(True, 7)
    assert (await cameras.upload_settings("cam")).alerts_enabled
    assert inner.calls == 2


async def test_nothing_is_remembered_while_the_follower_is_not_reading() -> None:
    cameras, inner = view()
    cameras._last_poll = time.monotonic() - 60
    await cameras.upload_settings("cam")
    await cameras.upload_settings("cam")
    assert inner.calls == 2


async def test_an_event_read_during_the_question_prevents_remembering() -> None:
    cameras, inner = view()

    def poll() -> None:
        cameras._last_poll += 0.001

    inner.during_call = poll
    await cameras.upload_settings("cam")
    inner.during_call = None
    await cameras.upload_settings("cam")
    assert inner.calls == 2


async def test_a_zero_ttl_always_asks_and_revocations_forget_everyone() -> None:
    cameras, inner = view(ttl=0)
    await cameras.upload_settings("cam")
    await cameras.upload_settings("cam")
    assert inner.calls == 2
    cameras, inner = view()
    await cameras.upload_settings("cam")
    cameras.apply(
        identity_events.IdentityEvent(certificate_revoked=identity_events.CertificateRevoked())
    )
    await cameras.upload_settings("cam")
    assert inner.calls == 2

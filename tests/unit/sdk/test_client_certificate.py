"""The SDK client follows its profile's certificate (a renewal) without a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from privacam_sdk import PrivacamClient, Profile
from privacam_sdk import client as client_module
from tests.pki_helpers import PkiFactory


@pytest.fixture
def profile(pki: PkiFactory, tmp_path: Path) -> Profile:
    identity = pki.camera("t-rotation", "d-rotation")
    return Profile.import_files(
        "camera", identity.ca_file, identity.cert_file, identity.key_file, base=tmp_path
    )


async def test_renewed_certificate_gets_new_channels(
    profile: Profile, pki: PkiFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "PROFILE_CHECK_SECONDS", 0.0)
    async with PrivacamClient(profile) as client:
        first = client.channel("clip_ingest")
        assert client.channel("clip_ingest") is first  # unchanged files: the same channel

        renewed = pki.camera("t-rotation", "d-rotation")  # another key: not this profile's
        profile.store_certificate(renewed.cert_file.read_bytes())
        assert client.channel("clip_ingest") is first  # a certificate without its key: ignored

        profile.key_file.write_bytes(renewed.key_file.read_bytes())
        second = client.channel("clip_ingest")
        assert second is not first  # the renewed pair: new channels from now on
        assert client.channel("clip_ingest") is second

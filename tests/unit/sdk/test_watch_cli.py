"""`privacam watch digest`: each digest with the SDK's verdict against the verified log, as
text or one JSON document, exit 0 when all agree and 3 when one disagrees. The client and the
reader are fakes at the module's seams; what is printed is the real code's."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as identity_pb
from privacam.identity.v1 import identity_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_sdk import watch_cli
from privacam_sdk.watch import DigestCheck
from tests.unit.sdk.fakes import FakeClient

HEAD = log_pb2.SignedTreeHead(tenant_id="t1", tree_size=12, root_hash=b"\x01" * 32, key_id="k1")


def _notice() -> watch_pb2.WatchNotice:
    notice = watch_pb2.WatchNotice(notice_id="d1", tenant_id="t1", rule=watch_pb2.WATCH_RULE_DIGEST)
    digest = notice.digest
    digest.period_start.FromSeconds(1_796_256_000)
    digest.period_end.FromSeconds(1_796_860_800)
    digest.first_index, digest.end_index, digest.views = 0, 12, 3
    digest.by_viewer.add(
        principal=types_pb2.Principal(kind=types_pb2.PRINCIPAL_KIND_APP, id="alice"), count=3
    )
    digest.by_kind.add(purpose=types_pb2.ACCESS_PURPOSE_LIVE_VIEW, count=3)
    digest.by_camera.add(device_id="cam-1", count=3)
    return notice


def _reader(problems: list[str]) -> type[Any]:
    class FakeReader:
        def __init__(self, client: object) -> None:
            pass

        async def check(self) -> list[DigestCheck]:
            return [DigestCheck(_notice(), HEAD, problems)]

    return FakeReader


@pytest.mark.parametrize(
    ("problems", "status"),
    [([], 0), (["viewer (1, '', 'alice'): the digest says 4, the verified log holds 3"], 3)],
)
async def test_watch_digest_json_and_status(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problems: list[str],
    status: int,
) -> None:
    monkeypatch.setattr(watch_cli, "PrivacamClient", FakeClient)
    monkeypatch.setattr(watch_cli, "WatchReader", _reader(problems))
    args = argparse.Namespace(command="watch", action="digest", json=True)
    assert await watch_cli.run(args, object()) == status  # type: ignore[arg-type]
    document = json.loads(capsys.readouterr().out)
    (check,) = document["digests"]
    assert check["agrees"] is (not problems)
    assert check["problems"] == problems
    assert check["head"]["tree_size"] == 12
    assert check["digest"]["digest"]["views"] == 3
    args.json = False
    assert await watch_cli.run(args, object()) == status  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert ("DISAGREES" in text) is bool(problems)
    assert "app alice: 3" in text


# --- per-camera tuning: mute, unmute, set burst-count, show --------------------------------


class FakeDeviceAuth:
    """Keeps one camera's watch tuning as device_auth would (mute/unmute by rule)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.watch = identity_pb2.CameraWatchSettings()

    async def UpdateCameraSettings(self, request: Any) -> Any:
        self.requests.append(request)
        muted = (set(self.watch.muted_rules) | set(request.mute_watch_rules)) - set(
            request.unmute_watch_rules
        )
        self.watch.ClearField("muted_rules")
        self.watch.muted_rules.extend(sorted(muted))
        if request.HasField("watch_burst_count"):
            self.watch.burst_count = request.watch_burst_count
        return identity_pb.UpdateCameraSettingsResponse(settings=self._settings())

    async def GetCameraSettings(self, request: Any) -> Any:
        self.requests.append(request)
        return identity_pb.GetCameraSettingsResponse(settings=self._settings())

    def _settings(self) -> identity_pb2.CameraSettings:
        return identity_pb2.CameraSettings(retention_days=7, watch=self.watch)


def _tuning_client(stub: FakeDeviceAuth) -> type[Any]:
    class Client(FakeClient):
        def device_auth(self) -> FakeDeviceAuth:
            return stub

    return Client


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    watch_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["watch", *argv])


async def test_mute_unmute_and_burst_count_reach_device_auth(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stub = FakeDeviceAuth()
    monkeypatch.setattr(watch_cli, "PrivacamClient", _tuning_client(stub))
    assert await watch_cli.run(_parse("mute", "cam-1", "operator-access"), None) == 0  # type: ignore[arg-type]
    assert await watch_cli.run(_parse("mute", "cam-1", "burst"), None) == 0  # type: ignore[arg-type]
    assert await watch_cli.run(_parse("unmute", "cam-1", "burst"), None) == 0  # type: ignore[arg-type]
    assert await watch_cli.run(_parse("set", "cam-1", "burst-count", "12"), None) == 0  # type: ignore[arg-type]
    mute, _, unmute, tune = stub.requests
    assert (mute.device_id, list(mute.mute_watch_rules)) == (
        "cam-1",
        [watch_pb2.WATCH_RULE_OPERATOR_ACCESS],
    )
    assert list(unmute.unmute_watch_rules) == [watch_pb2.WATCH_RULE_BURST]
    assert tune.watch_burst_count == 12
    assert not tune.mute_watch_rules
    capsys.readouterr()
    assert await watch_cli.run(_parse("show", "cam-1"), None) == 0  # type: ignore[arg-type]
    text = capsys.readouterr().out
    assert "camera cam-1: burst count 12" in text
    assert "operator-access      muted" in text
    assert "burst                told" in text
    assert await watch_cli.run(_parse("show", "cam-1", "--json"), None) == 0  # type: ignore[arg-type]
    shown = json.loads(capsys.readouterr().out)
    assert (shown["muted_rules"], shown["burst_count"]) == (["operator-access"], 12)


def test_an_unknown_rule_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        _parse("mute", "cam-1", "new-app-install")  # the account's, not a camera's

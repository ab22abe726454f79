"""`--json` on the access-log listings and on privacy status: one JSON document on stdout that
a script can parse, with the same exit status as the text output. The platform is replaced by
fakes at the module's seams (the client and the log reader); what is printed is the real code's."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from privacam.accesslog.v1 import access_log_service_pb2 as al_pb
from privacam.accesslog.v1 import access_log_service_pb2_grpc as access_log_pb_grpc
from privacam.accesslog.v1 import log_pb2
from privacam.identity.v1 import device_auth_service_pb2 as id_pb
from privacam.identity.v1 import identity_pb2, privacy_pb2
from privacam.types.v1 import types_pb2
from privacam_sdk import access_log_cli, privacy_cli
from privacam_sdk.access_log import Listing, LogDeleted, LogTampered, VerifiedEntry
from privacam_sdk.privacy import Mode, Window
from tests.unit.sdk import fakes

NOW = datetime(2026, 12, 7, 21, 30, tzinfo=UTC)
DEVICE = "0b7c1a52-8d1e-4f0e-9c55-3f1d2a6b9e01"


def _stamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class FakeClient(fakes.FakeClient):
    """device_auth() answers GetCameraSettings with ``settings``."""

    settings = identity_pb2.CameraSettings()

    def device_auth(self) -> FakeClient:
        return self

    async def GetCameraSettings(
        self, request: id_pb.GetCameraSettingsRequest, **_: object
    ) -> id_pb.GetCameraSettingsResponse:
        assert request.device_id == DEVICE
        return id_pb.GetCameraSettingsResponse(settings=self.settings)


# --- access-log list ------------------------------------------------------------------------


def _listing() -> Listing:
    records = [
        log_pb2.AccessRecord(
            access_id=f"access-{i}",
            tenant_id="tenant-1",
            principal=types_pb2.Principal(
                kind=types_pb2.PRINCIPAL_KIND_APP, tenant_id="tenant-1", id="app-1"
            ),
            resource=log_pb2.Resource(
                kind=log_pb2.RESOURCE_KIND_LIVE_SESSION, device_id=DEVICE, session_id=f"s{i}"
            ),
            purpose=types_pb2.ACCESS_PURPOSE_LIVE_VIEW,
            service="relay_broker",
            occurred_at=_stamp(NOW - timedelta(minutes=10 - i)),
        )
        for i in range(2)
    ]
    head = log_pb2.SignedTreeHead(
        tenant_id="tenant-1",
        tree_size=2,
        root_hash=bytes(range(32)),
        timestamp=_stamp(NOW),
        key_id="log-key-1",
        signature=b"\x01" * 64,
    )
    return Listing(
        entries=[VerifiedEntry(index=i, record=r) for i, r in enumerate(records)],
        head=head,
        previous_size=1,
    )


class FakeReader:
    outcome: Listing | Exception = _listing()

    def __init__(self, client: object) -> None:
        pass

    async def list(self, camera: str, since: object, until: object) -> Listing:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


@pytest.fixture
def fake_log(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[FakeReader]]:
    monkeypatch.setattr(access_log_cli, "PrivacamClient", FakeClient)
    monkeypatch.setattr(access_log_cli, "AccessLogReader", FakeReader)
    yield FakeReader
    FakeReader.outcome = _listing()


def _list_args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    access_log_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["access-log", "list", *extra])


async def test_access_log_list_json_parses(
    fake_log: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await access_log_cli.run(_list_args("--json"), profile=None)  # type: ignore[arg-type]
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["verified"] is True
    assert [e["index"] for e in document["entries"]] == [0, 1]
    first = document["entries"][0]["record"]
    assert first["access_id"] == "access-0"
    assert first["principal"] == {
        "kind": "PRINCIPAL_KIND_APP",
        "tenant_id": "tenant-1",
        "id": "app-1",
    }
    assert first["resource"]["kind"] == "RESOURCE_KIND_LIVE_SESSION"
    assert first["purpose"] == "ACCESS_PURPOSE_LIVE_VIEW"
    assert first["occurred_at"] == "2026-12-07T21:20:00Z"
    assert document["head"] == {
        "tenant_id": "tenant-1",
        "tree_size": 2,
        "root_hash": bytes(range(32)).hex(),
        "timestamp": "2026-12-07T21:30:00Z",
        "key_id": "log-key-1",
    }
    assert document["previous_size"] == 1


async def test_access_log_list_text_unchanged(
    fake_log: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    code = await access_log_cli.run(_list_args(), profile=None)  # type: ignore[arg-type]
    assert code == 0
    out = capsys.readouterr().out
    assert out.startswith("#0 ")
    assert "verified 2 entries against head size 2" in out


async def test_access_log_list_json_on_tampering_and_deletion(
    fake_log: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_log.outcome = LogTampered("the log forked at entry 1")
    code = await access_log_cli.run(_list_args("--json"), profile=None)  # type: ignore[arg-type]
    assert code == access_log_cli.EXIT_TAMPERED
    assert json.loads(capsys.readouterr().out) == {
        "verified": False,
        "error": "the log forked at entry 1",
    }

    fake_log.outcome = LogDeleted("tenant-1", 7, NOW)
    code = await access_log_cli.run(_list_args("--json"), profile=None)  # type: ignore[arg-type]
    assert code == access_log_cli.EXIT_DELETED
    document = json.loads(capsys.readouterr().out)
    assert (document["deleted"], document["final_size"]) == (True, 7)
    assert document["deleted_at"] == NOW.isoformat()


async def test_operator_requests_and_incidents_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Stub:
        async def ListOperatorAccess(
            self, request: object, **_: object
        ) -> al_pb.ListOperatorAccessResponse:
            access = al_pb.OperatorAccess(operator_access_id="oa-1", reason="ticket 42")
            return al_pb.ListOperatorAccessResponse(operator_accesses=[access])

        async def ListIncidentNotices(
            self, request: object, **_: object
        ) -> al_pb.ListIncidentNoticesResponse:
            notice = al_pb.IncidentNotice(incident_id="inc-1", touched_entry_indices=[3])
            return al_pb.ListIncidentNoticesResponse(notices=[notice])

    class Client:
        def channel(self, name: str) -> None:
            return None

    monkeypatch.setattr(access_log_pb_grpc, "AccessLogServiceStub", lambda _: Stub())
    for action, key, value in (
        ("requests", "operator_access_id", "oa-1"),
        ("incidents", "incident_id", "inc-1"),
    ):
        parser = argparse.ArgumentParser()
        access_log_cli.add_commands(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["access-log", action, "--json"])
        assert await access_log_cli._operator_access(args, Client()) == 0  # type: ignore[arg-type]
        listed = json.loads(capsys.readouterr().out)
        assert [item[key] for item in listed] == [value]


# --- privacy status -------------------------------------------------------------------------


def _privacy_args(*extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    privacy_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser.parse_args(["privacy", DEVICE, *extra])


def test_mode_json_schedule_and_until() -> None:
    # Monday 21:30 UTC, +01:00: 22:30 local, inside mon 22:00-07:00.
    schedule = Mode("schedule", utc_offset_minutes=60, windows=(Window(0, 22 * 60, 7 * 60),))
    document: dict[str, Any] = privacy_cli.mode_json(DEVICE, schedule, NOW)
    assert document["private"] is True
    assert document["mode"] == "schedule"
    assert document["windows"] == [{"day": "mon", "start": "22:00", "end": "07:00"}]
    assert document["utc_offset_minutes"] == 60
    assert document["next_change"] == "2026-12-08T06:00:00Z"  # 07:00 local

    until = Mode("until", until=NOW + timedelta(hours=2))
    document = privacy_cli.mode_json(DEVICE, until, NOW)
    assert (document["private"], document["until"]) == (True, "2026-12-07T23:30:00Z")
    assert privacy_cli.mode_json(DEVICE, None, NOW) == {
        "device_id": DEVICE,
        "mode": None,
        "private": False,
        "reason": None,
    }


async def test_privacy_status_json_parses(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    statement = privacy_pb2.PrivacyStatement(
        tenant_id="tenant-1",
        device_id=DEVICE,
        signer_install_id="install-1",
        issued_at=_stamp(NOW - timedelta(hours=1)),
        on=privacy_pb2.PrivacyOn(),
    )
    FakeClient.settings = identity_pb2.CameraSettings(
        privacy=privacy_pb2.SignedPrivacyStatement(
            statement=statement.SerializeToString(), signature=b"sig"
        )
    )
    monkeypatch.setattr(privacy_cli, "PrivacamClient", FakeClient)
    code = await privacy_cli.run(_privacy_args("status", "--json"), profile=None)  # type: ignore[arg-type]
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["device_id"] == DEVICE
    assert (document["mode"], document["private"]) == ("on", True)
    assert document["signer_install_id"] == "install-1"
    assert document["issued_at"] == "2026-12-07T20:30:00Z"
    assert document["next_change"] is None


async def test_privacy_change_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    sent: list[Mode] = []

    async def set_mode(client: object, device: str, mode: Mode, now: datetime) -> None:
        sent.append(mode)

    monkeypatch.setattr(privacy_cli, "PrivacamClient", FakeClient)
    monkeypatch.setattr(privacy_cli, "set_privacy_mode", set_mode)
    code = await privacy_cli.run(_privacy_args("off", "--json"), profile=None)  # type: ignore[arg-type]
    assert code == 0
    assert sent == [Mode("off")]
    document = json.loads(capsys.readouterr().out)
    assert (document["mode"], document["private"], document["reason"]) == ("off", False, None)

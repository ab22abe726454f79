"""`privacam watch digest`: each digest with the SDK's verdict against the verified log, as
text or one JSON document, exit 0 when all agree and 3 when one disagrees. The client and the
reader are fakes at the module's seams; what is printed is the real code's."""

from __future__ import annotations

import argparse
import json
from types import TracebackType
from typing import Any

import pytest

from privacam.accesslog.v1 import log_pb2
from privacam.types.v1 import types_pb2
from privacam.watch.v1 import events_pb2 as watch_pb2
from privacam_sdk import watch_cli
from privacam_sdk.watch import DigestCheck

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


class FakeClient:
    def __init__(self, *_: object, **__: object) -> None:
        pass

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None


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

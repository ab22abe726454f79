"""An event's table changes are acknowledged before the event is: the worker waits for
the changelog writes themselves, not for faust-streaming's flush, which gives up after
0.1 s with messages still buffered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.privacy_watch.adapters.worker import ChangelogAcks


class Table:
    """A table whose changelog writes are acknowledged when the test says so."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[Any]] = []

    def send_changelog(self, partition: int, key: Any, value: Any) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.sent.append(future)
        return future

    def __setitem__(self, key: Any, value: Any) -> None:
        self.send_changelog(0, key, value)  # as Faust's Table.on_key_set does


async def test_an_event_waits_for_its_changelog_writes() -> None:
    acks = ChangelogAcks()
    households, entries = Table(), Table()
    acks.track(households)
    acks.track(entries)
    households["t1"] = {"size": 1}
    entries["t1/a"] = 0
    waiting = asyncio.create_task(acks.written())
    await asyncio.sleep(0.2)  # longer than Faust's flush waits
    assert not waiting.done()
    households.sent[0].set_result(None)
    await asyncio.sleep(0)
    assert not waiting.done()
    entries.sent[0].set_result(None)
    await asyncio.wait_for(waiting, 1)
    await asyncio.wait_for(acks.written(), 1)  # nothing new: returns at once


async def test_a_failed_write_fails_the_event() -> None:
    acks = ChangelogAcks()
    table = Table()
    acks.track(table)
    table["t1"] = {}
    table.sent[0].set_exception(RuntimeError("not enough replicas"))
    with pytest.raises(RuntimeError):
        await acks.written()

"""Stands in for PrivacamClient in the CLI's unit tests: an async context manager that
opens no channel; a test adds the stubs its command calls."""

from __future__ import annotations

from types import TracebackType
from typing import Self


class FakeClient:
    def __init__(self, *_: object, **__: object) -> None:
        pass

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        return None

"""Page tokens are opaque, bound to their query, and refused when forged."""

from __future__ import annotations

import pytest

from services.clip_ingest.api.servicer import decode_token, encode_token
from services.common.errors import InvalidArgument


def test_a_token_round_trips_for_its_own_query_only() -> None:
    token = encode_token("0001764000000000:clip-1", "query-a")
    assert "clip-1" not in token
    assert decode_token(token, "query-a") == "0001764000000000:clip-1"
    with pytest.raises(InvalidArgument, match="another query"):
        decode_token(token, "query-b")


@pytest.mark.parametrize("token", ["zz", "!!!", "e30", encode_token("x", "q")[:-3]])
def test_forged_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument):
        decode_token(token, "q")

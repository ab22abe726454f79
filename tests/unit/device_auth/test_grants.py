"""Sharing: owners grant viewer rights (live, clips) to other accounts, and take them back."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from privacam_core.identity import PrincipalKind
from services.device_auth.domain.errors import (
    AlreadyExists,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
)
from services.device_auth.domain.events import GrantCreated, GrantRevoked
from services.device_auth.domain.records import Grant, GrantScope, Subject
from services.device_auth.domain.service import DeviceAuthConfig, GrantDirection
from tests.unit.device_auth.conftest import START, World

LIVE, CLIPS = GrantScope.LIVE, GrantScope.CLIPS


async def _setup(world: World) -> tuple[str, str, str]:
    """(owner tenant, camera, guest tenant) with 'bob' as the guest's login."""
    owner = await world.register("alice")
    guest = await world.register("bob")
    device = (await world.pair_camera(owner.tenant_id)).principal_id
    world.events.clear()
    return owner.tenant_id, device, guest.tenant_id


async def test_a_grant_lets_the_grantee_see_the_camera_with_its_scopes(world: World) -> None:
    owner, device, guest = await _setup(world)
    view = await world.service.create_grant(owner, device, "bob", [LIVE])
    assert view.grantee_login == "bob"
    grant = view.grant
    assert (grant.owner_tenant_id, grant.grantee_tenant_id, grant.device_id) == (
        owner,
        guest,
        device,
    )
    assert (grant.scopes, grant.created_at, grant.expires_at) == (frozenset({LIVE}), START, None)
    assert await world.service.can_view(guest, device, LIVE)
    assert not await world.service.can_view(guest, device, CLIPS)
    assert (await world.service.get_camera(guest, device)).scopes == frozenset({LIVE})


async def test_the_owner_can_view_everything_and_strangers_nothing(world: World) -> None:
    owner, device, guest = await _setup(world)
    assert await world.service.can_view(owner, device, LIVE)
    assert await world.service.can_view(owner, device, CLIPS)
    assert not await world.service.can_view(guest, device, LIVE)
    assert not await world.service.can_view(guest, str(uuid.uuid4()), LIVE)
    assert not await world.service.can_view(guest, "not an id", LIVE)
    with pytest.raises(NotFound):
        await world.service.get_camera(guest, device)


async def test_a_grant_is_published_without_the_login(world: World) -> None:
    owner, device, _ = await _setup(world)
    (install,) = await world.installs.list_for_tenant(owner)
    actor = Subject(PrincipalKind.APP, owner, install.install_id)
    view = await world.service.create_grant(owner, device, "bob", [LIVE, CLIPS], actor=actor)
    (event,) = world.events.published
    assert event.body == GrantCreated(view.grant)
    assert (event.tenant_id, event.actor) == (owner, actor)
    assert "bob" not in repr(event)


@pytest.mark.parametrize(
    ("scopes", "complaint"),
    [([], "scopes"), ([LIVE, LIVE], "scopes")],
)
async def test_scopes_are_one_or_both_without_duplicates(
    world: World, scopes: list[GrantScope], complaint: str
) -> None:
    owner, device, _ = await _setup(world)
    with pytest.raises(InvalidInput, match=complaint):
        await world.service.create_grant(owner, device, "bob", scopes)


async def test_an_expiry_must_be_in_the_future(world: World) -> None:
    owner, device, _ = await _setup(world)
    with pytest.raises(InvalidInput, match="future"):
        await world.service.create_grant(owner, device, "bob", [LIVE], START)
    with pytest.raises(InvalidInput, match="future"):
        await world.service.create_grant(
            owner, device, "bob", [LIVE], (START + timedelta(days=1)).replace(tzinfo=None)
        )


async def test_a_grant_with_an_expiry_ends_by_itself(world: World) -> None:
    owner, device, guest = await _setup(world)
    await world.service.create_grant(owner, device, "bob", [LIVE], START + timedelta(hours=2))
    assert await world.service.can_view(guest, device, LIVE)
    world.clock.advance(timedelta(hours=2))
    assert not await world.service.can_view(guest, device, LIVE)
    assert not await world.service.list_cameras(guest)
    assert not await world.service.list_grants(owner, GrantDirection.GIVEN)
    # and the camera can be shared with the same account again
    await world.service.create_grant(owner, device, "bob", [CLIPS])


async def test_an_unknown_grantee_login_is_not_found(world: World) -> None:
    owner, device, _ = await _setup(world)
    with pytest.raises(NotFound, match="no account has the login 'carol'"):
        await world.service.create_grant(owner, device, "carol", [LIVE])
    with pytest.raises(InvalidInput, match="login"):
        await world.service.create_grant(owner, device, "Carol!", [LIVE])


async def test_an_owner_cannot_share_with_itself_or_twice_with_the_same_account(
    world: World,
) -> None:
    owner, device, _ = await _setup(world)
    with pytest.raises(InvalidInput, match="another account"):
        await world.service.create_grant(owner, device, "alice", [LIVE])
    await world.service.create_grant(owner, device, "bob", [LIVE])
    with pytest.raises(AlreadyExists, match="already shared"):
        await world.service.create_grant(owner, device, "bob", [CLIPS])


async def test_a_camera_is_shared_with_a_bounded_number_of_accounts(world: World) -> None:
    world = World(world.clock, world.authority, config=DeviceAuthConfig(max_grants_per_camera=1))
    owner, device, _ = await _setup(world)
    await world.register("carol")
    await world.service.create_grant(owner, device, "bob", [LIVE])
    with pytest.raises(PreconditionFailed, match="at most 1 accounts"):
        await world.service.create_grant(owner, device, "carol", [LIVE])


async def test_only_the_owner_shares_a_camera(world: World) -> None:
    owner, device, guest = await _setup(world)
    await world.register("carol")
    await world.service.create_grant(owner, device, "bob", [LIVE])
    with pytest.raises(Forbidden):
        await world.service.create_grant(guest, device, "carol", [LIVE])
    stranger = (await world.register("mallory")).tenant_id
    with pytest.raises(NotFound):
        await world.service.create_grant(stranger, device, "carol", [LIVE])


async def test_grants_are_listed_given_and_received_newest_first(world: World) -> None:
    owner, device, guest = await _setup(world)
    await world.register("carol")
    second_camera = (await world.pair_camera(owner, "SN-2")).principal_id
    first = await world.service.create_grant(owner, device, "bob", [LIVE])
    world.clock.advance(timedelta(minutes=1))
    second = await world.service.create_grant(owner, second_camera, "carol", [CLIPS])
    given = await world.service.list_grants(owner, GrantDirection.GIVEN)
    assert [(v.grant, v.grantee_login) for v in given] == [
        (second.grant, "carol"),
        (first.grant, "bob"),
    ]
    only_first = await world.service.list_grants(owner, GrantDirection.GIVEN, device)
    assert [v.grant for v in only_first] == [first.grant]
    received = await world.service.list_grants(guest, GrantDirection.RECEIVED)
    assert [(v.grant, v.grantee_login) for v in received] == [(first.grant, "")]
    assert not await world.service.list_grants(guest, GrantDirection.GIVEN)
    assert len(await world.service.list_grants(owner)) == 2


async def test_the_listing_shows_the_grantees_current_login(world: World) -> None:
    owner, device, guest = await _setup(world)
    await world.service.create_grant(owner, device, "bob", [LIVE])
    await world.service.update_login(guest, "robert")
    (view,) = await world.service.list_grants(owner, GrantDirection.GIVEN)
    assert view.grantee_login == "robert"


async def _granted(world: World) -> tuple[str, str, str, Grant]:
    owner, device, guest = await _setup(world)
    grant = (await world.service.create_grant(owner, device, "bob", [LIVE])).grant
    world.events.clear()
    return owner, device, guest, grant


async def test_the_owner_revokes_a_grant(world: World) -> None:
    owner, device, guest, grant = await _granted(world)
    assert await world.service.revoke_grant(owner, grant.grant_id) == START
    assert world.events.bodies() == [GrantRevoked(grant.grant_id, device, guest)]
    assert world.events.published[0].tenant_id == owner
    assert not await world.service.can_view(guest, device, LIVE)


async def test_the_grantee_gives_a_grant_up(world: World) -> None:
    owner, device, guest, grant = await _granted(world)
    await world.service.revoke_grant(guest, grant.grant_id)
    assert world.events.bodies() == [GrantRevoked(grant.grant_id, device, guest)]
    assert not await world.service.list_grants(owner)


async def test_a_third_account_cannot_touch_a_grant_and_learns_nothing(world: World) -> None:
    _, _, _, grant = await _granted(world)
    stranger = (await world.register("mallory")).tenant_id
    with pytest.raises(NotFound) as foreign:
        await world.service.revoke_grant(stranger, grant.grant_id)
    with pytest.raises(NotFound) as missing:
        await world.service.revoke_grant(stranger, str(uuid.uuid4()))
    assert str(foreign.value) == str(missing.value)
    assert grant.grant_id in world.grants.records
    with pytest.raises(InvalidInput, match="grant_id"):
        await world.service.revoke_grant(stranger, "")

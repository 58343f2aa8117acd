"""Which host users are admins (and agents), without loading the whole user table on every
page.

Admins and agents are decided by the host's callbacks, in Python, so they cannot be
found with a query. A shop whose customers also have accounts may have 100,000 users: the
ticket page (assignee list) and admin mail would otherwise read all of them each time. The
ids of the admins and of the agents are found by one scan, in chunks, and remembered per process for
:data:`CACHE_SECONDS` or until users are added or removed (a cheap count tells); the users
themselves are then loaded by primary key. A host that changes someone's role and wants it
seen at once calls :func:`forget`.
"""
from __future__ import annotations

import threading
import time

import sqlalchemy as sa

from ..extension import get_state
from ..models import user_primary_key

#: How long a process trusts its list of admin ids (a new admin shows up within this time).
CACHE_SECONDS = 60
_CHUNK = 1000

_lock = threading.Lock()
_ATTR = "_shared_inbox_admin_ids"


def admin_ids(*, refresh: bool = False) -> frozenset:
    """Primary keys of the host users the ``admin_loader`` calls admins."""
    return _roles(refresh)[0]


def agent_ids(*, refresh: bool = False) -> frozenset:
    """Primary keys of the host users who are agents (admins included)."""
    return _roles(refresh)[1]


def _roles(refresh: bool) -> tuple[frozenset, frozenset]:
    """(admin ids, agent ids), from the cache or one scan of the user table."""
    state = get_state()
    pk = user_primary_key(state.user_model)
    now = time.monotonic()
    # max() of the key as text: works for integer and UUID keys on every database.
    shape = tuple(state.db.session.execute(
        sa.select(sa.func.count(), sa.func.max(sa.cast(pk, sa.String)))).one())
    with _lock:
        hit = getattr(state, _ATTR, None)
        if (hit is not None and not refresh and now - hit[0] < CACHE_SECONDS
                and hit[1] == shape):
            return hit[2], hit[3]
    ext = state.extension
    admins, agents = set(), set()
    # A separate, read-only pass: the host's objects are expunged so the caller's session
    # does not keep 100,000 users in its identity map.
    session = state.db.session
    known = set(session.identity_map.keys())  # e.g. the logged-in user: keep those attached
    with session.no_autoflush:
        result = session.execute(
            sa.select(state.user_model).order_by(pk).execution_options(yield_per=_CHUNK))
        for partition in result.scalars().partitions():
            for user in partition:
                key = getattr(user, pk.key)
                if ext.is_admin(user):
                    admins.add(key)
                if ext.is_agent(user):
                    agents.add(key)
                if sa.inspect(user).identity_key not in known:
                    session.expunge(user)
    found = (frozenset(admins), frozenset(agents))
    with _lock:
        setattr(state, _ATTR, (now, shape, *found))
    return found


def admin_users() -> list:
    """The admin users themselves, loaded by primary key."""
    return _users(admin_ids(), get_state().extension.is_admin)


def agent_users(*, admins: bool = True) -> list:
    """The agents themselves (without the admins if ``admins=False``), loaded by primary
    key and asked again, sorted by name."""
    ext = get_state().extension
    chosen = _users(agent_ids(), lambda u: ext.is_agent(u) and (admins or not ext.is_admin(u)))
    return sorted(chosen, key=lambda u: (ext.display_user(u)["name"] or "").lower())


def _users(ids, still) -> list:
    """The users with these primary keys for whom ``still(user)`` holds: the host may have
    changed someone's role since the scan, so the few found are asked again."""
    if not ids:
        return []
    state = get_state()
    pk = user_primary_key(state.user_model)
    return [u for u in state.db.session.scalars(sa.select(state.user_model).where(pk.in_(ids)))
            if still(u)]


def forget() -> None:
    """Drop this app's cached list (a host that just changed who is an admin)."""
    state = get_state()
    with _lock:
        if hasattr(state, _ATTR):
            delattr(state, _ATTR)

"""Tags: created on the fly from a ticket, unique whatever their case, managed by admins."""
from __future__ import annotations

import re

import sqlalchemy as sa

from ..extension import get_state
from .tickets import record_activity

MAX_TAG_LENGTH = 64
COLOR = re.compile(r"#[0-9a-fA-F]{6}")


class TagError(ValueError):
    """A tag name or colour is refused (shown to the user)."""


def clean_tag_name(name) -> str:
    """Trimmed, inner whitespace collapsed; TagError when empty or too long."""
    name = " ".join(str(name or "").split())
    if not name:
        raise TagError("Enter a tag name.")
    if len(name) > MAX_TAG_LENGTH:
        raise TagError(f"A tag name can be at most {MAX_TAG_LENGTH} characters long.")
    return name


def clean_color(value) -> str:
    value = str(value or "").strip()
    if not COLOR.fullmatch(value):
        raise TagError("Enter a colour like #1f8a70.")
    return value.lower()


def find_tag(name: str, exclude_id: int | None = None):
    """The tag with this name, compared without case (the one tag per name)."""
    state = get_state()
    m = state.models
    query = sa.select(m.Tag).where(sa.func.lower(m.Tag.name) == name.lower())
    if exclude_id is not None:
        query = query.where(m.Tag.id != exclude_id)
    return state.db.session.scalar(query.order_by(m.Tag.id).limit(1))


def get_or_create_tag(name):
    name = clean_tag_name(name)
    tag = find_tag(name)
    if tag is not None:
        return tag
    state = get_state()
    session = state.db.session
    tag = state.models.Tag(name=name)
    try:
        with session.begin_nested():  # another agent may create it at the same moment
            session.add(tag)
    except sa.exc.IntegrityError:
        tag = find_tag(name)
        if tag is None:
            raise
    return tag


def add_tag(ticket, name, actor=None):
    """Tag the ticket (creating the tag if needed); returns (tag, added?)."""
    tag = get_or_create_tag(name)
    if tag in ticket.tags:
        return tag, False
    ticket.tags.append(tag)
    record_activity(ticket, "tag_added", actor, tag=tag.name)
    _sla_reevaluate(ticket)
    return tag, True


def _sla_reevaluate(ticket) -> None:
    """An SLA policy may match on the tag (si0011)."""
    from .sla import reevaluate

    reevaluate(ticket)


def remove_tag(ticket, tag, actor=None) -> bool:
    if tag not in ticket.tags:
        return False
    ticket.tags.remove(tag)
    record_activity(ticket, "tag_removed", actor, tag=tag.name)
    _sla_reevaluate(ticket)
    return True


def tags_with_counts() -> list[tuple[object, int]]:
    """Every tag with the number of tickets carrying it, by name."""
    state = get_state()
    m = state.models
    count = (sa.select(sa.func.count()).select_from(m.ticket_tags)
             .where(m.ticket_tags.c.tag_id == m.Tag.id).scalar_subquery())
    rows = state.db.session.execute(
        sa.select(m.Tag, count).order_by(sa.func.lower(m.Tag.name), m.Tag.id))
    return [(tag, n) for tag, n in rows]


def rename_tag(tag, new_name):
    """Rename; to the name of another tag, merge into it. Returns the surviving tag."""
    state = get_state()
    m = state.models
    session = state.db.session
    new_name = clean_tag_name(new_name)
    other = find_tag(new_name, exclude_id=tag.id)
    if other is None:
        tag.name = new_name
        return tag
    tt = m.ticket_tags
    already = sa.select(tt.c.ticket_id).where(tt.c.tag_id == other.id)
    session.execute(tt.insert().from_select(
        ["ticket_id", "tag_id"],
        sa.select(tt.c.ticket_id, sa.literal(other.id)).where(
            tt.c.tag_id == tag.id, tt.c.ticket_id.not_in(already))))
    delete_tag(tag)
    return other


def delete_tag(tag) -> None:
    state = get_state()
    m = state.models
    session = state.db.session
    session.execute(m.ticket_tags.delete().where(m.ticket_tags.c.tag_id == tag.id))
    session.delete(tag)
    session.flush()
    # Tickets loaded in this session must not keep the deleted tag in their collection.
    for obj in list(session.identity_map.values()):
        if isinstance(obj, m.Ticket):
            session.expire(obj, ["tags"])

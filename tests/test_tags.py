"""Tags on tickets (agents) and the tags settings page (admins): rename-merge, colour, delete."""
import pytest
import sqlalchemy as sa

from test_ticket_actions import activities, as_user, make_ticket
from test_ticket_actions import world as world  # noqa: F401 (the fixture)


def tag_names(host, ticket_id):
    with host.app.app_context():
        return [t.name for t in host.db.session.get(host.inbox.models.Ticket, ticket_id).tags]


def all_tags(host):
    with host.app.app_context():
        m = host.inbox.models
        return {t.name: t.color for t in host.db.session.scalars(sa.select(m.Tag))}


def tag_id(host, name):
    with host.app.app_context():
        m = host.inbox.models
        return host.db.session.scalar(sa.select(m.Tag.id).where(m.Tag.name == name))


def test_add_and_remove_tags_on_a_ticket(host, client, world):
    tok = as_user(host, client, world["ada"])
    url = f"/support/tickets/{world['ticket']}/tags"
    r = client.post(url, data={"name": "  VIP   customer ", "csrf_token": tok},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Added tag VIP customer." in page and "Ada added tag VIP customer" in page
    # Case-insensitive: the same tag, not a second one.
    r = client.post(url, data={"name": "vip CUSTOMER", "csrf_token": tok}, follow_redirects=True)
    assert "already has the tag VIP customer" in r.get_data(as_text=True)
    other = make_ticket(host, world["support"], "Another")
    client.post(f"/support/tickets/{other}/tags", data={"name": "vip customer", "csrf_token": tok})
    assert list(all_tags(host)) == ["VIP customer"]
    assert tag_names(host, other) == ["VIP customer"]

    tid = tag_id(host, "VIP customer")
    r = client.post(f"{url}/{tid}/remove", data={"csrf_token": tok}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Removed tag VIP customer." in page and "Ada removed tag VIP customer" in page
    assert tag_names(host, world["ticket"]) == []
    assert [a for a, _ in activities(host, world["ticket"])] == ["tag_added", "tag_removed"]
    assert client.post(f"{url}/999/remove", data={"csrf_token": tok}).status_code == 404


@pytest.mark.parametrize("name,message", [("", "Enter a tag name"), ("   ", "Enter a tag name"),
                                          ("x" * 65, "at most 64 characters")])
def test_bad_tag_names_are_refused(host, client, world, name, message):
    tok = as_user(host, client, world["ada"])
    r = client.post(f"/support/tickets/{world['ticket']}/tags",
                    data={"name": name, "csrf_token": tok}, follow_redirects=True)
    assert message in r.get_data(as_text=True)
    assert all_tags(host) == {} and activities(host, world["ticket"]) == []


def test_sixty_four_characters_is_fine(host, client, world):
    tok = as_user(host, client, world["ada"])
    client.post(f"/support/tickets/{world['ticket']}/tags",
                data={"name": "y" * 64, "csrf_token": tok})
    assert tag_names(host, world["ticket"]) == ["y" * 64]


def test_tag_removal_needs_access_and_csrf(host, client, world):
    tok = as_user(host, client, world["boss"])
    client.post(f"/support/tickets/{world['ticket']}/tags", data={"name": "vip", "csrf_token": tok})
    tid = tag_id(host, "vip")
    url = f"/support/tickets/{world['ticket']}/tags/{tid}/remove"
    tok = as_user(host, client, world["ben"])
    assert client.post(url, data={"csrf_token": tok}).status_code == 404
    tok = as_user(host, client, world["ada"])
    assert client.post(url).status_code == 400
    assert tag_names(host, world["ticket"]) == ["vip"]


def test_tags_settings_are_for_admins(host, client, world):
    tok = as_user(host, client, world["ada"])
    client.post(f"/support/tickets/{world['ticket']}/tags", data={"name": "vip", "csrf_token": tok})
    tid = tag_id(host, "vip")
    assert client.get("/support/settings/tags/").status_code == 403
    assert client.post(f"/support/settings/tags/{tid}",
                       data={"name": "x", "color": "#000000", "csrf_token": tok}).status_code == 403
    assert client.post(f"/support/settings/tags/{tid}/delete",
                       data={"csrf_token": tok}).status_code == 403
    host.login(client, world["boss"])
    page = client.get("/support/settings/tags/").get_data(as_text=True)
    assert "vip" in page and "<td>1</td>" in page
    assert "/support/settings/tags/" in client.get("/support/settings/").get_data(as_text=True)
    assert client.post(f"/support/settings/tags/{tid}/delete").status_code == 400


def test_rename_colour_and_delete(host, client, world):
    tok = as_user(host, client, world["boss"])
    client.post(f"/support/tickets/{world['ticket']}/tags", data={"name": "vip", "csrf_token": tok})
    tid = tag_id(host, "vip")
    r = client.post(f"/support/settings/tags/{tid}", data={
        "name": "VIP", "color": "#1F8A70", "csrf_token": tok}, follow_redirects=True)
    assert "Tag vip renamed to VIP." in r.get_data(as_text=True)
    assert all_tags(host) == {"VIP": "#1f8a70"}

    for color in ("red", "#12345", "#gggggg", "#1234567", ""):
        r = client.post(f"/support/settings/tags/{tid}", data={
            "name": "VIP", "color": color, "csrf_token": tok})
        assert r.status_code == 400
        assert "Enter a colour like #1f8a70." in r.get_data(as_text=True)
    r = client.post(f"/support/settings/tags/{tid}", data={
        "name": " ", "color": "#000000", "csrf_token": tok})
    assert r.status_code == 400 and "Enter a tag name." in r.get_data(as_text=True)
    assert all_tags(host) == {"VIP": "#1f8a70"}

    r = client.post(f"/support/settings/tags/{tid}/delete", data={"csrf_token": tok},
                    follow_redirects=True)
    assert "Tag VIP deleted." in r.get_data(as_text=True)
    assert all_tags(host) == {} and tag_names(host, world["ticket"]) == []
    assert client.post(f"/support/settings/tags/{tid}/delete",
                       data={"csrf_token": tok}).status_code == 404


def test_renaming_onto_an_existing_name_merges_the_tags(host, client, world):
    tok = as_user(host, client, world["boss"])
    t1, t2, t3 = world["ticket"], world["other"], make_ticket(host, world["support"], "Third")
    for ticket, name in ((t1, "vip"), (t2, "vip"), (t2, "important"), (t3, "important")):
        client.post(f"/support/tickets/{ticket}/tags", data={"name": name, "csrf_token": tok})
    important, vip = tag_id(host, "important"), tag_id(host, "vip")
    r = client.post(f"/support/settings/tags/{important}", data={
        "name": "VIP ", "color": "#000000", "csrf_token": tok}, follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Tag important merged into vip." in page
    assert list(all_tags(host)) == ["vip"]
    assert tag_names(host, t1) == tag_names(host, t2) == tag_names(host, t3) == ["vip"]
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.execute(sa.select(m.ticket_tags)).all()
        assert sorted(r.ticket_id for r in rows) == sorted([t1, t2, t3])
        assert {r.tag_id for r in rows} == {vip}

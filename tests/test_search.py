"""Inbox search: subject, body, customer name and address; diacritics; hostile syntax;
combined with folders and filters; never across mailboxes the agent may not see."""
import pytest
import sqlalchemy as sa

from shared_inbox.services.search import fts5_query, terms
from test_inbox import World, get, ids_on


@pytest.fixture
def world(host):
    w = World(host)
    w.tent = w.ticket("Tent pole broke", body="The pole snapped on the second night.",
                      customer=("Jürgen Müller", "juergen@camping.example"), minutes=1)
    w.stove = w.ticket("Stove question", body="Es läuft nicht mehr, der Brenner ist kaputt.",
                       customer=("Ana Ruiz", "ana.ruiz@example.org"), minutes=2,
                       status="pending")
    w.secret = w.ticket("Refund for the tent", mailbox=w.billing,
                        body="Please refund order 1042 for the tent.",
                        customer=("Zoe Zed", "zoe@example.org"), minutes=3)
    return w


def _search(client, q, **params):
    return ids_on(get(client, q=q, **params))


def test_finds_by_subject_body_customer_name_and_email(world):
    c = world.client(world.ada)
    assert _search(c, "pole") == [world.tent]
    assert _search(c, "snapped") == [world.tent]
    assert _search(c, "Tent pole") == [world.tent]
    assert _search(c, "Müller") == [world.tent]
    assert _search(c, "juergen@camping.example") == [world.tent]
    assert _search(c, "ana.ruiz@example.org", folder="pending") == [world.stove]
    assert _search(c, "nothing-like-this") == []
    assert "No conversations match" in get(c, q="nothing-like-this")


def test_diacritics_are_folded(world, database):
    """A customer writes "läuft" or "Müller"; the agent types it without accents (on
    PostgreSQL through unaccent, which the test database's owner may create)."""
    c = world.client(world.ada)
    assert _search(c, "lauft", folder="pending") == [world.stove]
    assert _search(c, "läuft", folder="pending") == [world.stove]
    assert _search(c, "Muller") == [world.tent]


@pytest.mark.parametrize("q", ['"', '"tent', "-", "-tent", ":", "subject:tent", "*", "tent*",
                               "NEAR(", "NEAR(tent pole)", "AND", "OR NOT", "(", ")", "'",
                               "%", "_", "\\", "tent OR", "^tent", "{subject}: x", "\x00",
                               "a" * 2000, "ü" * 50, '" OR 1=1 --'])
def test_user_syntax_never_raises(world, q):
    c = world.client(world.admin)
    r = c.get("/support/", query_string={"q": q})
    assert r.status_code == 200


def test_punctuation_is_only_a_separator(world):
    c = world.client(world.ada)
    assert _search(c, '"pole"') == [world.tent]
    assert _search(c, "pole:") == [world.tent]
    assert _search(c, "(tent)") == [world.tent]
    assert terms('NEAR( "x" -y:z*') == [["NEAR"], ["x"], ["y", "z"]]
    assert fts5_query('a"b') == '"a b"'
    assert fts5_query("  ") is None


def test_never_finds_tickets_of_mailboxes_the_agent_may_not_see(world):
    ada = world.client(world.ada)
    assert _search(ada, "refund") == []
    assert _search(ada, "tent") == [world.tent]
    assert _search(ada, "refund", mailbox=world.billing) == []
    ben = world.client(world.ben)
    assert _search(ben, "tent") == [world.secret, world.tent]
    admin = world.client(world.admin)
    assert _search(admin, "refund") == [world.secret]


def test_search_combines_with_folders_and_filters(world):
    w = world
    c = w.client(w.ben)
    assert _search(c, "tent", mailbox=w.support) == [w.tent]
    assert _search(c, "tent", folder="closed") == []
    assert _search(c, "brenner") == []  # pending, not in "All open"
    assert _search(c, "brenner", folder="pending") == [w.stove]
    assert _search(c, "tent", sort="oldest") == [w.tent, w.secret]


def test_search_follows_message_changes(world):
    """The FTS index is kept in sync with messages by triggers (SQLite) or is an index (PG)."""
    w = world
    with w.host.app.app_context():
        m = w.host.inbox.models
        s = w.host.db.session
        msg = s.scalar(sa.select(m.Message).where(m.Message.ticket_id == w.tent))
        msg.body_text = "Zipper stuck"
        s.commit()
    c = w.client(w.ada)
    assert _search(c, "snapped") == []
    assert _search(c, "zipper") == [w.tent]
    with w.host.app.app_context():
        m = w.host.inbox.models
        s = w.host.db.session
        s.execute(sa.delete(m.Message).where(m.Message.ticket_id == w.tent))
        s.commit()
    assert _search(c, "zipper") == []


def test_search_objects_exist_after_upgrade_from_an_old_schema(make_host):
    """si0005 builds the index over messages that were already there (mail stored before the
    upgrade is found by search after it)."""
    host = make_host()
    with host.app.app_context():
        host.db.metadata.create_all(host.db.engine, tables=[host.User.__table__])
    runner = host.app.test_cli_runner()
    assert runner.invoke(args=["inbox", "upgrade"]).exit_code == 0
    w = World(host)
    old = w.ticket("Legacy lantern", body="An old flickering lantern")
    # Back to the schema before search existed (the rows stay), then forward again.
    assert runner.invoke(args=["inbox", "downgrade", "si0004"]).exit_code == 0
    assert runner.invoke(args=["inbox", "upgrade"]).exit_code == 0
    assert _search(w.client(w.admin), "flickering") == [old]
    assert _search(w.client(w.admin), "lantern") == [old]


def test_frequent_query_plan_gives_the_same_rows(world, monkeypatch):
    """Above FREQUENT_HITS matching messages SQLite walks the list and probes (EXISTS)."""
    from shared_inbox.services import search

    c = world.client(world.ben)
    cases = [("tent", {}), ("tent", {"sort": "oldest"}), ("tent", {"sort": "waiting"}),
             ("brenner", {"folder": "pending"}), ("nothing", {})]
    expected = [_search(c, q, **p) for q, p in cases]
    monkeypatch.setattr(search, "FREQUENT_HITS", 1)
    monkeypatch.setattr(search, "PG_FREQUENT_HITS", 0)  # PostgreSQL: the walk, not the CTE
    assert [_search(c, q, **p) for q, p in cases] == expected
    assert expected[1] == [world.tent, world.secret] and expected[3] == [world.stove]


def test_postgresql_materialises_a_rare_query_first(world, database):
    """PostgreSQL: a query the planner expects to be rare collects its hits first (GIN) in a
    MATERIALIZED CTE; left alone the planner may walk every ticket recomputing to_tsvector."""
    if database != "postgresql":
        pytest.skip("PostgreSQL plan choice")
    from shared_inbox.extension import get_state

    host = world.host
    statements = []

    def _record(conn, cursor, statement, *args):
        statements.append(statement)

    c = world.client(world.ben)
    with host.app.app_context():
        engine = get_state(host.app).db.engine
    sa.event.listen(engine, "before_cursor_execute", _record)
    try:
        assert _search(c, "brenner", folder="pending") == [world.stove]
    finally:
        sa.event.remove(engine, "before_cursor_execute", _record)
    assert any(s.startswith("EXPLAIN (FORMAT JSON)") for s in statements)
    assert any("si_search_hits AS MATERIALIZED" in s for s in statements)

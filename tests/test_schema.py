"""Schema management: our tables only, our own Alembic history, upgrades that keep data."""
import logging
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

import shared_inbox

from shared_inbox.services.search import is_search_object

VERSIONS = Path(shared_inbox.__file__).parent / "migrations" / "versions"
HEAD = max(p.name.split("_")[0] for p in VERSIONS.glob("si[0-9]*.py"))

CORE_TABLES = {
    "inbox_mailbox", "inbox_mailbox_member", "inbox_customer", "inbox_tag", "inbox_ticket",
    "inbox_ticket_tag", "inbox_message", "inbox_attachment", "inbox_saved_reply",
    "inbox_activity", "inbox_fetched_uid", "inbox_sync_state", "inbox_alembic_version",
    "inbox_ticket_read",
}


def our_tables(host) -> set[str]:
    """Every table the models map, plus Alembic's version table (the core ones at least)."""
    with host.app.app_context():
        names = {t.name for t in host.inbox.models.tables} | {"inbox_alembic_version"}
    assert CORE_TABLES <= names
    assert all(n.startswith("inbox_") for n in names)
    return names


def _cli(host, *args):
    result = host.app.test_cli_runner().invoke(args=["inbox", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def _tables(host):
    with host.app.app_context():
        return set(sa.inspect(host.db.engine).get_table_names())


def _existing_host_database(host):
    """A host database with its own tables, data and Alembic version row."""
    with host.app.app_context():
        with host.db.engine.begin() as conn:
            host.db.metadata.create_all(conn, tables=[host.User.__table__])
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            conn.execute(sa.text("INSERT INTO alembic_version VALUES ('host0042')"))
            conn.execute(sa.text("CREATE TABLE orders (id INTEGER PRIMARY KEY, total INTEGER)"))
            conn.execute(sa.text("INSERT INTO orders VALUES (1, 4200)"))
    host.add_user("owner@x.test", role="admin")


def test_init_db_creates_only_our_tables_and_leaves_the_host_alone(make_host):
    host = make_host()
    _existing_host_database(host)
    before = _tables(host)
    assert "created" in _cli(host, "init-db")
    after = _tables(host)
    assert {t for t in after - before if not is_search_object(t)} == our_tables(host)
    with host.app.app_context(), host.db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "host0042"
        assert conn.execute(sa.text("SELECT total FROM orders")).scalar() == 4200
        assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar() == 1
    # Running it again is harmless.
    assert "upgraded" in _cli(host, "init-db")
    assert _tables(host) == after


def test_upgrade_from_an_older_schema_keeps_the_data(make_host):
    host = make_host()
    _existing_host_database(host)
    _cli(host, "upgrade", "si0001")
    assert "inbox_ticket" in _tables(host) and "inbox_fetched_uid" not in _tables(host)
    with host.app.app_context(), host.db.engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO inbox_mailbox (name, email_address, from_name, signature, is_active, "
            "imap_host, imap_port, imap_security, imap_username, imap_folder, after_fetch, "
            "move_to_folder, smtp_host, smtp_port, smtp_security, smtp_username, auth_type, "
            "needs_reauth, created_at) VALUES ('Support', 'support@x.test', '', '', true, "
            "'imap.x.test', 993, 'ssl', '', 'INBOX', 'leave', '', '', 587, 'starttls', '', "
            "'password', false, CURRENT_TIMESTAMP)"))
    assert "si0001" in _cli(host, "current")
    _cli(host, "upgrade")
    assert our_tables(host) <= _tables(host)
    assert f"current: {HEAD}" in _cli(host, "current")
    with host.app.app_context():
        mailbox = host.db.session.scalar(sa.select(host.inbox.models.Mailbox))
        assert mailbox.email_address == "support@x.test"
        # The upgraded schema is the one the code uses: a sync row can be written.
        host.db.session.add(host.inbox.models.SyncState(mailbox_id=mailbox.id, folder="INBOX"))
        host.db.session.commit()
    _cli(host, "downgrade", "si0001")
    assert "inbox_sync_state" not in _tables(host) and "inbox_mailbox" in _tables(host)


@pytest.mark.parametrize("pk", ["int", "uuid"])
def test_migrations_produce_exactly_the_models_schema(make_host, pk):
    """Fresh installs use the models, upgrades use the migrations: they must agree."""
    host = make_host(pk=pk, user_table="accounts")
    with host.app.app_context():
        host.db.metadata.create_all(host.db.engine, tables=[host.User.__table__])
    _cli(host, "upgrade")
    with host.app.app_context(), host.db.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={
            "compare_type": True,
            "include_name": lambda name, type_, parents: type_ != "table" or name.startswith("inbox_"),
            # The unmapped full-text objects of si0005 (FTS5 tables, GIN index) are skipped.
            "include_object": lambda obj, name, type_, *_: not is_search_object(name or "") and (
                type_ != "table" or (name.startswith("inbox_") and name != "inbox_alembic_version")),
        })
        diff = compare_metadata(ctx, host.db.metadata)
    assert diff == []


def test_uuid_user_model_with_custom_table_name(make_host):
    host = make_host(pk="uuid", user_table="staff_accounts", declarative=True)
    host.create_tables()
    agent = host.add_user("ada@x.test")
    assert isinstance(agent, uuid.UUID)
    with host.app.app_context():
        m = host.inbox.models
        fk = next(iter(m.Ticket.__table__.c.assignee_id.foreign_keys))
        assert fk.target_fullname == "staff_accounts.id"
        mailbox = m.Mailbox(name="Support", email_address="support@x.test")
        ticket = m.Ticket(mailbox=mailbox, subject="Zip broke", assignee_id=agent)
        host.db.session.add_all([ticket, m.MailboxMember(mailbox=mailbox, user_id=agent)])
        host.db.session.commit()
        ticket_id = ticket.id
        assert ticket.assignee.email == "ada@x.test"
    client = host.app.test_client()
    host.login(client, agent)
    assert "Zip broke" in client.get("/support/").get_data(as_text=True)
    assert client.get(f"/support/tickets/{ticket_id}").status_code == 200


# Flask-Migrate's own generated env.py still calls the deprecated db.get_engine().
@pytest.mark.filterwarnings("ignore:'get_engine' is deprecated:DeprecationWarning")
def test_flask_migrate_autogenerate_leaves_our_tables_out(make_host, tmp_path, monkeypatch):
    """The documented include_object filter keeps a host's `flask db migrate` to its own tables."""
    from flask_migrate import Migrate, init, migrate

    from shared_inbox import exclude_from_host_migrations

    # The generated env.py runs logging.config.fileConfig, which disables every logger that
    # exists already; give the next tests their loggers back.
    loggers = logging.root.manager.loggerDict.values()
    enabled = [lg for lg in loggers if isinstance(lg, logging.Logger) and not lg.disabled]
    monkeypatch.setattr(logging.root, "handlers", list(logging.root.handlers))
    monkeypatch.setattr(logging.root, "level", logging.root.level)
    for lg in enabled:
        monkeypatch.setattr(lg, "disabled", False)

    def generated(filtered: bool, where):
        host = make_host()
        Migrate(host.app, host.db, directory=str(where),
                **({"include_object": exclude_from_host_migrations} if filtered else {}))
        with host.app.app_context():
            init(directory=str(where))
            migrate(directory=str(where), message="host")
        return "".join(p.read_text() for p in (where / "versions").glob("*.py"))

    monkeypatch.chdir(tmp_path)
    without = generated(False, tmp_path / "m1")
    assert "inbox_ticket" in without  # what the filter is there to prevent
    script = generated(True, tmp_path / "m2")
    assert "'users'" in script
    assert "inbox_" not in script

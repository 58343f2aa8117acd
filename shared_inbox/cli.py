"""``flask inbox ...``: schema, polling, the worker, mailboxes and the demo."""
from __future__ import annotations

from datetime import datetime

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .config import cv
from .extension import get_state


def make_cli_group(name: str) -> AppGroup:
    group = AppGroup(name, help="shared_inbox: the shared ticket inbox.")
    for command in COMMANDS:
        group.add_command(command)
    return group


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the inbox tables in the app's database (other tables are left alone)."""
    from .schema import init_db

    what = init_db()
    click.echo(f"shared_inbox tables {what} (schema at the newest revision).")


@click.command("upgrade")
@with_appcontext
@click.argument("revision", default="head")
def upgrade_command(revision):
    """Apply the inbox's schema migrations (its own version table, not the host's)."""
    from .schema import upgrade

    upgrade(revision)
    click.echo(f"shared_inbox schema upgraded to {revision}.")


@click.command("downgrade")
@with_appcontext
@click.argument("revision")
def downgrade_command(revision):
    """Revert the inbox's schema to an older revision."""
    from .schema import downgrade

    downgrade(revision)
    click.echo(f"shared_inbox schema downgraded to {revision}.")


@click.command("current")
@with_appcontext
def current_command():
    """Show the schema revision of the inbox tables."""
    from .schema import current_revision, head_revision

    with get_state().db.engine.connect() as conn:
        rev = current_revision(conn)
    click.echo(f"current: {rev or '(not installed)'}; newest: {head_revision()}")


@click.command("poll")
@with_appcontext
@click.option("--mailbox", "address", help="Only this mailbox (its name or address).")
def poll_command(address):
    """Fetch new mail now, once."""
    from .mail.imap import poll_all, poll_mailbox

    if address:
        results = [poll_mailbox(_mailbox_by_address(address))]
    else:
        results = poll_all()
    failed = False
    for r in results:
        if r.locked:
            click.echo(f"{r.mailbox}: being polled by another process, skipped")
        elif r.error:
            failed = True
            click.echo(f"{r.mailbox}: {r.error}", err=True)
        else:
            click.echo(f"{r.mailbox}: {r.ingested} new, {r.skipped} already known")
    if failed:
        raise SystemExit(1)


@click.command("run-worker")
@with_appcontext
def run_worker_command():
    """Fetch mail forever: IMAP IDLE where the server offers it, polling as the fallback."""
    import signal

    from .mail.idle import Worker

    app = current_app._get_current_object()
    worker = Worker(app)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_event.set())
    click.echo(f"shared_inbox worker: IDLE where offered, polling every "
               f"{cv('POLL_INTERVAL')} s; Ctrl-C stops.")
    worker.run_forever()


def _mailbox_by_address(name_or_address: str):
    """A mailbox by its address or its name."""
    state = get_state()
    m = state.models
    mailbox = state.db.session.scalar(sa.select(m.Mailbox).where(sa.or_(
        m.Mailbox.email_address == name_or_address.lower(), m.Mailbox.name == name_or_address)))
    if mailbox is None:
        raise click.ClickException(f"no mailbox {name_or_address!r}")
    return mailbox


def _parse_since(value: str | None):
    if not value or value == "new":
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise click.BadParameter("use 'new' (only new mail) or a date like 2026-01-31") from None


@click.command("add-mailbox")
@with_appcontext
@click.argument("name")
@click.option("--email", "address", required=True, help="The mailbox address, e.g. support@acme.com")
@click.option("--imap-host", required=True)
@click.option("--imap-port", type=int, help="Default: 993 with --tls ssl, else 143.")
@click.option("--imap-user", default="", help="IMAP/SMTP login; default: the address.")
@click.option("--password-env", metavar="VAR",
              help="Read the password from this environment variable (else it is asked for). "
              "Never put a secret on the command line.")
@click.option("--tls", type=click.Choice(["ssl", "starttls", "none"]), default="ssl",
              show_default=True, help="'none' is allowed only to 127.0.0.1.")
@click.option("--folder", default="INBOX", show_default=True)
@click.option("--since", "since", default="new", show_default=True,
              help="How far back to import: 'new' (only new mail) or a date YYYY-MM-DD.")
@click.option("--smtp-host", default="", help="Default: the IMAP host.")
@click.option("--smtp-port", type=int, help="Default: 465 with --smtp-tls ssl, else 587.")
@click.option("--smtp-tls", type=click.Choice(["ssl", "starttls", "none"]), default="starttls",
              show_default=True)
def add_mailbox_command(name, address, imap_host, imap_port, imap_user, password_env, tls,
                        folder, since, smtp_host, smtp_port, smtp_tls):
    """Connect a mailbox called NAME (e.g. "Support")."""
    import os

    if password_env:
        password = os.environ.get(password_env)
        if not password:
            raise click.ClickException(f"environment variable {password_env} is not set")
    else:
        password = click.prompt("IMAP password", hide_input=True)
    security = {"none": "plain"}
    state = get_state()
    mailbox = state.models.Mailbox(
        email_address=address.lower(), name=name, imap_host=imap_host,
        imap_port=imap_port or (993 if tls == "ssl" else 143),
        imap_security=security.get(tls, tls), imap_username=imap_user, imap_folder=folder,
        import_since=_parse_since(since), smtp_host=smtp_host or imap_host,
        smtp_port=smtp_port or (465 if smtp_tls == "ssl" else 587),
        smtp_security=security.get(smtp_tls, smtp_tls), smtp_username=imap_user,
    )
    mailbox.imap_password = password
    state.db.session.add(mailbox)
    try:
        state.db.session.commit()
    except sa.exc.IntegrityError:
        raise click.ClickException(f"a mailbox {address} already exists") from None
    click.echo(f"Mailbox {name} <{address}> added (id {mailbox.id}); "
               f"importing {'only new mail' if since == 'new' else 'mail since ' + since}.")


@click.command("add-member")
@with_appcontext
@click.argument("mailbox_address")
@click.argument("user")
def add_member_command(mailbox_address, user):
    """Let USER (an id of the host's user table, or an email) see MAILBOX (name or address)."""
    from .services.mailboxes import add_member

    state = get_state()
    mailbox = _mailbox_by_address(mailbox_address)
    user_id, user = user, _find_user(user)
    if user is None:
        raise click.ClickException(f"no user {user_id!r}")
    add_member(mailbox, user)
    state.db.session.commit()
    click.echo(f"{state.extension.display_user(user)['name']} may now see {mailbox.email_address}.")


def _find_user(value: str):
    state = get_state()
    model = state.user_model
    if "@" in value and hasattr(model, "email"):
        return state.db.session.scalar(sa.select(model).where(model.email == value))
    try:
        return state.db.session.get(model, _coerce_user_id(value))
    except (sa.exc.StatementError, ValueError):
        return None


def _coerce_user_id(value: str):
    from .models import user_primary_key

    pk = user_primary_key(get_state().user_model)
    try:
        return pk.type.python_type(value) if pk.type.python_type is not str else value
    except (ValueError, NotImplementedError):
        return value


@click.command("test-connection")
@with_appcontext
@click.argument("mailbox_address")
def test_connection_command(mailbox_address):
    """Log in to a mailbox and open its folder; explain what is wrong if it fails."""
    from .mail.imap import MailboxConnectionError, test_connection

    try:
        click.echo(test_connection(_mailbox_by_address(mailbox_address)))
    except MailboxConnectionError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("gen-key")
@with_appcontext
def gen_key_command():
    """Print a new key for SHARED_INBOX_ENCRYPTION_KEYS."""
    from .crypto import generate_key

    click.echo(generate_key())


@click.command("demo")
@with_appcontext
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, type=int, show_default=True)
@click.option("--poll-interval", default=5, type=int, show_default=True,
              help="Seconds between polls of the development mailboxes.")
def demo_command(host, port, poll_interval):
    """Start the development mail server, seed it, and serve the app with the inbox."""
    from werkzeug.serving import run_simple

    from .demo import start_demo

    app = current_app._get_current_object()
    app.config["SHARED_INBOX_POLL_INTERVAL"] = poll_interval
    server = start_demo(app)
    click.echo(f"\n  Shop and inbox: http://{host}:{port}{cv('URL_PREFIX')}/")
    click.echo(f"  Development mail: IMAP 127.0.0.1:{server.imap_port}, "
               f"SMTP 127.0.0.1:{server.smtp_port} (send mail to "
               f"{', '.join(server.users)} and watch it arrive)\n")
    try:
        run_simple(host, port, app, use_reloader=False, threaded=True)
    finally:
        from .scheduler import stop

        stop(app)
        server.stop()


COMMANDS = [
    init_db_command, upgrade_command, downgrade_command, current_command, poll_command,
    run_worker_command, add_mailbox_command, add_member_command, test_connection_command,
    gen_key_command, demo_command,
]

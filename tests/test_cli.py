"""`flask inbox ...` as an admin scripting a set-up would use it."""
import pytest
import sqlalchemy as sa

from shared_inbox.mail.devserver import DevMailServer


@pytest.fixture
def mail_server():
    with DevMailServer(users={"support@example.com": "pw-support"}) as server:
        yield server


def run(host, *args, env=None, input=None):
    return host.app.test_cli_runner().invoke(args=["inbox", *args], env=env, input=input)


def test_add_mailbox_reads_the_secret_from_the_environment_then_polls(host, mail_server):
    mail_server.deliver("support@example.com", b"From: Alice <alice@example.org>\r\n"
                        b"Subject: Tent\r\nMessage-ID: <t1@example.org>\r\n\r\nPole broke.\r\n")
    r = run(host, "add-mailbox", "Support", "--email", "support@example.com", "--imap-host",
            "127.0.0.1", "--imap-port", str(mail_server.imap_port), "--tls", "none",
            "--password-env", "SUPPORT_PW", "--since", "2020-01-01", env={"SUPPORT_PW": "pw-support"})
    assert r.exit_code == 0, r.output
    assert "Mailbox Support <support@example.com> added" in r.output
    with host.app.app_context():
        raw = host.db.session.execute(sa.text("SELECT imap_secret FROM inbox_mailbox")).scalar()
        assert "pw-support" not in raw
    r = run(host, "test-connection", "Support")
    assert r.exit_code == 0 and "connected" in r.output
    r = run(host, "poll", "--mailbox", "Support")
    assert r.exit_code == 0 and "support@example.com: 1 new, 0 already known" in r.output
    r = run(host, "poll")
    assert "0 new" in r.output


def test_password_is_prompted_when_no_variable_is_given_and_never_an_option(host, mail_server):
    r = run(host, "add-mailbox", "Support", "--email", "support@example.com",
            "--imap-host", "127.0.0.1", "--tls", "none", input="pw-support\n")
    assert r.exit_code == 0, r.output
    r = run(host, "add-mailbox", "Other", "--email", "o@example.com", "--imap-host", "x",
            "--password", "secret")
    assert r.exit_code != 0 and "No such option" in r.output


def test_bad_input_is_explained(host, mail_server):
    r = run(host, "add-mailbox", "S", "--email", "s@example.com", "--imap-host", "h",
            "--password-env", "MISSING_VAR")
    assert r.exit_code != 0 and "MISSING_VAR is not set" in r.output
    r = run(host, "add-mailbox", "S", "--email", "s@example.com", "--imap-host", "h",
            "--since", "last week", input="x\n")
    assert r.exit_code != 0 and "YYYY-MM-DD" not in r.output and "2026-01-31" in r.output
    run(host, "add-mailbox", "S", "--email", "s@example.com", "--imap-host", "h", input="x\n")
    r = run(host, "add-mailbox", "S2", "--email", "s@example.com", "--imap-host", "h", input="x\n")
    assert r.exit_code != 0 and "already exists" in r.output


def test_test_connection_explains_a_wrong_password(host, mail_server):
    run(host, "add-mailbox", "Support", "--email", "support@example.com", "--imap-host",
        "127.0.0.1", "--imap-port", str(mail_server.imap_port), "--tls", "none", input="nope\n")
    r = run(host, "test-connection", "support@example.com")
    assert r.exit_code != 0
    assert "login failed: check the user name and password" in r.output


def test_add_member_by_email_or_id(host, mail_server):
    run(host, "add-mailbox", "Support", "--email", "support@example.com", "--imap-host", "h",
        input="x\n")
    ada = host.add_user("ada@example.com")
    ben = host.add_user("ben@example.com")
    assert run(host, "add-member", "Support", "ada@example.com").exit_code == 0
    assert run(host, "add-member", "support@example.com", str(ben)).exit_code == 0
    r = run(host, "add-member", "Support", "nobody@example.com")
    assert r.exit_code != 0 and "no user" in r.output
    with host.app.app_context():
        m = host.inbox.models
        members = set(host.db.session.scalars(sa.select(m.MailboxMember.user_id)))
    assert members == {ada, ben}

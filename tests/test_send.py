"""Outgoing MIME and SMTP, against real servers on 127.0.0.1 (DevMailServer and aiosmtpd)."""
import base64
import socket
from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest
from aiosmtpd.controller import Controller

from shared_inbox.mail import send as mailsend
from shared_inbox.mail.devserver import DevMailServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedSMTP:
    """An SMTP server answering what the test scripts: refusals per recipient, and DATA
    replies consumed one by one before it accepts."""

    def __init__(self, rcpt=None, data=()):
        self.rcpt = {k.lower(): v for k, v in (rcpt or {}).items()}
        self.data = list(data)
        self.accepted: list[tuple[list[str], bytes]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data:
            return self.data.pop(0)
        self.accepted.append((list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    @property
    def port(self):
        return self.controller.port

    def __enter__(self):
        self.controller.start()
        return self

    def __exit__(self, *exc):
        self.controller.stop()


def _mailbox(port, host="127.0.0.1", security="plain", username=""):
    return SimpleNamespace(
        smtp_host=host, smtp_port=port, smtp_security=security, smtp_username=username,
        auth_type="password", smtp_password="support", imap_username="", name="Support",
        email_address="support@example.com", from_name="",
    )


def _simple_message():
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "support@example.com"
    msg["To"] = "alice@example.org"
    msg["Subject"] = "Hi"
    msg.set_content("Hello")
    return msg


@pytest.fixture
def app_ctx(host):
    with host.app.app_context():
        yield


def test_thread_index_new_and_child_are_valid():
    new = mailsend.new_thread_index()
    raw = base64.b64decode(new, validate=True)
    assert len(raw) == 22 and raw[0] == 1
    child = mailsend.child_thread_index(new)
    craw = base64.b64decode(child, validate=True)
    assert len(craw) == 27 and craw[:22] == raw
    grandchild = base64.b64decode(mailsend.child_thread_index(child), validate=True)
    assert len(grandchild) == 32 and grandchild[:27] == craw
    # Garbage from a customer's client starts a new, valid index.
    assert len(base64.b64decode(mailsend.child_thread_index("not base64!!"))) == 22
    assert len(base64.b64decode(mailsend.child_thread_index(base64.b64encode(b"x" * 23).decode()))) == 22


def test_subjects_never_stack_prefixes_and_carry_the_token_once():
    assert mailsend.reply_subject("Where is my order?", 7) == "Re: Where is my order? [#7]"
    assert mailsend.reply_subject("RE: Re: Fwd: Where is my order? [#7]", 7) == \
        "Re: Where is my order? [#7]"
    assert mailsend.reply_subject("", 3) == "Re: (no subject) [#3]"
    assert mailsend.thread_topic("Re: AW: Refund [#12]") == "Refund"


def test_html_is_escaped_with_paragraphs_and_links():
    out = mailsend.text_to_html("Hi <b>Ann</b> & co,\nsee https://shop.example/o?id=1&x=2.\n\nBye")
    assert "&lt;b&gt;Ann&lt;/b&gt; &amp; co,<br>" in out
    assert '<a href="https://shop.example/o?id=1&amp;x=2">https://shop.example/o?id=1&amp;x=2</a>.' in out
    assert out.count("<p>") == 2 and "<b>" not in out


def test_plain_smtp_is_refused_to_a_remote_host(app_ctx):
    with pytest.raises(mailsend.TransientSendError, match="only allowed to this machine"):
        mailsend.send(_mailbox(25, host="smtp.example.com"), _simple_message(), ["a@example.org"])


def test_send_to_the_dev_server_with_and_without_login(app_ctx):
    with DevMailServer(users={"support@example.com": "support"}) as server:
        no_password = _mailbox(server.smtp_port)
        no_password.smtp_password = ""
        assert mailsend.send(no_password, _simple_message(), ["alice@example.org"]) == {}
        mailsend.send(_mailbox(server.smtp_port, username="support@example.com"),
                      _simple_message(), ["alice@example.org"])
        # A blank SMTP user name means the IMAP user name (else the address), as the
        # mailbox form says, when the server offers AUTH and a password is known.
        mailsend.send(_mailbox(server.smtp_port), _simple_message(), ["alice@example.org"])
        sent = server.wait_for_sent(3)
    assert [s.auth_login for s in sent] == [None, "support@example.com", "support@example.com"]
    assert sent[0].mail_from == "support@example.com" and sent[0].rcpt_tos == ["alice@example.org"]


def test_wrong_smtp_password_is_a_readable_transient_error(app_ctx):
    with DevMailServer(users={"support@example.com": "support"}) as server:
        box = _mailbox(server.smtp_port, username="support@example.com")
        box.smtp_password = "wrong"
        with pytest.raises(mailsend.TransientSendError, match="SMTP login failed"):
            mailsend.send(box, _simple_message(), ["alice@example.org"])
        assert server.sent == []


def test_closed_port_is_transient_with_host_and_port(app_ctx):
    port = free_port()
    with pytest.raises(mailsend.TransientSendError, match=f"cannot connect to smtp 127.0.0.1:{port}"):
        mailsend.send(_mailbox(port), _simple_message(), ["alice@example.org"])


def test_server_replies_become_transient_or_permanent_errors(app_ctx):
    with ScriptedSMTP(rcpt={"nobody@example.org": "550 5.1.1 mailbox unknown",
                            "busy@example.org": "450 4.2.1 try later"},
                      data=["451 4.3.0 try later"]) as smtp:
        box = _mailbox(smtp.port)
        with pytest.raises(mailsend.PermanentSendError, match="550 5.1.1 mailbox unknown"):
            mailsend.send(box, _simple_message(), ["nobody@example.org"])
        with pytest.raises(mailsend.TransientSendError, match="450 4.2.1 try later"):
            mailsend.send(box, _simple_message(), ["busy@example.org"])
        with pytest.raises(mailsend.TransientSendError, match="451 4.3.0 try later"):
            mailsend.send(box, _simple_message(), ["alice@example.org"])
        # One recipient refused, another accepted: sent, and the refusal is reported.
        refused = mailsend.send(box, _simple_message(), ["alice@example.org", "nobody@example.org"])
        assert refused == {"nobody@example.org": "550 5.1.1 mailbox unknown"}
        assert [rcpts for rcpts, _ in smtp.accepted] == [["alice@example.org"]]
        body = message_from_bytes(smtp.accepted[0][1], policy=policy.default)
        assert body["Subject"] == "Hi"

"""Tests for the in-process development mail server and the demo emails.

Real servers and real clients (imapclient, smtplib) over loopback sockets,
no mocks: the point of DevMailServer is that the rest of the suite can trust
it behaves like a mail server.
"""

from __future__ import annotations

import email
import email.policy
import logging
import os
import re
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from shared_inbox.mail.demo_mail import demo_messages, tiny_pdf, tiny_png
from shared_inbox.mail.devserver import DEFAULT_USERS, DevMailServer
from shared_inbox.mail.idle import wait_for_idle_responses

SUPPORT = "support@example.com"
SALES = "sales@example.com"
BILLING = "billing@example.com"
FIXED_NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
REPO_ROOT = Path(__file__).resolve().parent.parent


# --- fixtures / helpers -----------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[DevMailServer]:
    with DevMailServer() as srv:
        yield srv


@pytest.fixture
def fresh_server() -> Iterator[DevMailServer]:
    """A private server for tests that need empty mailboxes."""
    with DevMailServer() as srv:
        yield srv


def imap_login(srv: DevMailServer, user: str = SUPPORT,
               password: str | None = None) -> IMAPClient:
    client = IMAPClient(srv.host, port=srv.imap_port, ssl=False, timeout=10)
    try:
        client.login(user, password if password is not None
                     else srv.users[user])
    except Exception:
        client.shutdown()
        raise
    return client


def make_mail(to: str = SUPPORT, subject: str = "Hello",
              body: str = "Hi there,\nmy order is late.\n") -> tuple[str, bytes]:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Customer <customer@example.org>"
    msg["To"] = to
    msg["Subject"] = subject
    msg_id = make_msgid(domain="test.example.org")
    msg["Message-ID"] = msg_id
    msg.set_content(body)
    return msg_id, msg.as_bytes()


def uids_with_message_id(client: IMAPClient, msg_id: str,
                         folder: str = "INBOX") -> list[int]:
    client.select_folder(folder)
    return client.search(["HEADER", "Message-ID", msg_id])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "DevMailServer"]


# --- lifecycle ----------------------------------------------------------------

def test_start_is_fast_listens_on_loopback_and_stops_cleanly(caplog):
    caplog.set_level(logging.WARNING)
    before = set(threading.enumerate())
    started = time.perf_counter()
    srv = DevMailServer().start()
    elapsed = time.perf_counter() - started
    try:
        assert elapsed < 1.0
        assert srv.host == "127.0.0.1"
        assert srv.imap_port > 0 and srv.smtp_port > 0
        assert srv.imap_port != srv.smtp_port
        for port in (srv.imap_port, srv.smtp_port):
            with socket.create_connection((srv.host, port), timeout=5) as s:
                assert s.recv(100)  # both servers greet immediately
    finally:
        srv.stop()
    srv.stop()  # idempotent
    assert set(threading.enumerate()) == before
    for port in (srv.imap_port, srv.smtp_port):
        with pytest.raises(OSError):
            socket.create_connection((srv.host, port), timeout=1).close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_stop_with_open_sessions_does_not_hang_or_leak(caplog):
    caplog.set_level(logging.WARNING)
    srv = DevMailServer().start()
    imap = imap_login(srv)
    imap.select_folder("INBOX")
    idler = imap_login(srv, SALES)
    idler.select_folder("INBOX")
    idler.idle()
    smtp = smtplib.SMTP(srv.host, srv.smtp_port, timeout=10)
    smtp.ehlo()
    smtp.mail("someone@example.org")
    try:
        started = time.perf_counter()
        srv.stop()
        assert time.perf_counter() - started < 5
        assert not server_threads()
    finally:
        for closer in (imap.shutdown, idler.shutdown, smtp.close):
            closer()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_port_in_use_fails_start_without_leaking():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        srv = DevMailServer(smtp_port=busy.getsockname()[1])
        with pytest.raises(OSError):
            srv.start()
    assert not server_threads()
    srv.stop()  # harmless after a failed start


def test_refuses_non_loopback_host():
    with pytest.raises(ValueError, match="loopback"):
        DevMailServer(host="0.0.0.0")


def test_explicit_ports_and_custom_users():
    imap_port, smtp_port = free_port(), free_port()
    users = {"helpdesk@shop.test": "s3cret"}
    with DevMailServer(imap_port=imap_port, smtp_port=smtp_port,
                       users=users) as srv:
        assert (srv.imap_port, srv.smtp_port) == (imap_port, smtp_port)
        client = imap_login(srv, "helpdesk@shop.test", "s3cret")
        client.logout()
        with pytest.raises(LoginError):
            imap_login(srv, SUPPORT, "support")  # defaults replaced


def test_default_users():
    assert DEFAULT_USERS == {SUPPORT: "support", SALES: "sales",
                             BILLING: "billing"}


# --- IMAP ---------------------------------------------------------------------

def test_capabilities_and_folders(server):
    client = IMAPClient(server.host, port=server.imap_port, ssl=False)
    try:
        pre = set(client.capabilities())
        assert b"STARTTLS" not in pre and b"LOGINDISABLED" not in pre
        client.login(SUPPORT, "support")
        caps = set(client.capabilities())
        assert {b"IDLE", b"UIDPLUS", b"MOVE"} <= caps
        names = {name for _flags, _delim, name in client.list_folders()}
        assert {"INBOX", "Sent"} <= names
    finally:
        client.logout()


@pytest.mark.parametrize("user,password", [
    (SUPPORT, "wrong"),
    (SUPPORT, ""),
    ("nobody@example.com", "support"),
])
def test_bad_credentials_are_rejected(server, user, password):
    with pytest.raises(LoginError):
        imap_login(server, user, password)


def test_users_are_isolated(server):
    msg_id, raw = make_mail(to=BILLING)
    server.deliver(BILLING, raw)
    support, billing = imap_login(server, SUPPORT), imap_login(server, BILLING)
    try:
        assert uids_with_message_id(billing, msg_id)
        assert not uids_with_message_id(support, msg_id)
    finally:
        support.logout()
        billing.logout()


def test_deliver_returns_increasing_uids_matching_imap(server):
    raws = [make_mail(subject=f"deliver {i}") for i in range(3)]
    uids = [server.deliver(SUPPORT, raw) for _, raw in raws]
    assert uids == sorted(uids) and len(set(uids)) == 3
    client = imap_login(server)
    try:
        client.select_folder("INBOX")
        fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"])
        for uid, (_, raw) in zip(uids, raws):
            assert fetched[uid][b"BODY[]"] == raw
            assert b"\\Seen" not in fetched[uid][b"FLAGS"]
        # A client APPEND gets the next UID, reported via APPENDUID.
        response = client.append("INBOX", make_mail()[1])
        match = re.search(rb"APPENDUID (\d+) (\d+)", response)
        assert match and int(match.group(2)) > uids[-1]
        assert server.deliver(SUPPORT, raws[0][1]) > int(match.group(2))
    finally:
        client.logout()


def test_deliver_options_and_errors(server):
    msg_id, raw = make_mail()
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    uid = server.deliver("Support <SUPPORT@example.com>", raw,
                         mailbox="Sent", flags=["\\Seen"], when=when)
    client = imap_login(server)
    try:
        assert uids_with_message_id(client, msg_id, "Sent") == [uid]
        data = client.fetch([uid], ["FLAGS", "INTERNALDATE"])[uid]
        assert b"\\Seen" in data[b"FLAGS"]
        assert data[b"INTERNALDATE"].astimezone(timezone.utc) == when
    finally:
        client.logout()
    with pytest.raises(KeyError):
        server.deliver("stranger@example.net", raw)


def test_idle_client_is_notified_of_new_mail(server):
    client = imap_login(server, SALES)
    try:
        client.select_folder("INBOX")
        client.idle()
        uid = server.deliver(SALES, make_mail(to=SALES)[1])
        responses = wait_for_idle_responses(client, 5)
        client.idle_done()
        assert any(r[1] == b"EXISTS" for r in responses), responses
        client.noop()
        assert uid in client.search()
    finally:
        client.logout()


# --- SMTP ---------------------------------------------------------------------

def test_smtp_to_known_user_is_recorded_and_lands_in_inbox(server):
    msg_id, raw = make_mail(subject="Order #1004 not arrived",
                            body="Hello,\n.leading dot line\nThanks\n")
    start = len(server.sent)
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
        refused = smtp.sendmail("customer@example.org", [SUPPORT], raw)
    assert refused == {}
    sent = server.wait_for_sent(start + 1)[start]
    assert sent.mail_from == "customer@example.org"
    assert sent.rcpt_tos == [SUPPORT]
    assert sent.data == raw  # byte-exact (dot-stuffing undone)
    assert sent.delivered_to == [SUPPORT]

    client = imap_login(server)
    try:
        uids = uids_with_message_id(client, msg_id)
        assert len(uids) == 1
        body = client.fetch(uids, ["BODY.PEEK[]"])[uids[0]][b"BODY[]"]
        assert body == raw
        assert b"\\Seen" not in client.get_flags(uids)[uids[0]]
    finally:
        client.logout()


def test_smtp_to_unknown_recipient_is_only_captured(server):
    msg_id, raw = make_mail(to="stranger@elsewhere.example")
    start = len(server.sent)
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
        smtp.sendmail(SUPPORT, ["stranger@elsewhere.example"], raw)
    sent = server.wait_for_sent(start + 1)[start]
    assert sent.rcpt_tos == ["stranger@elsewhere.example"]
    assert sent.delivered_to == []
    assert sent.data == raw
    for user in server.users:
        client = imap_login(server, user)
        try:
            for folder in ("INBOX", "Sent"):
                assert not uids_with_message_id(client, msg_id, folder)
        finally:
            client.logout()


def test_smtp_mixed_recipients(server):
    msg_id, raw = make_mail()
    start = len(server.sent)
    rcpts = ["Sales@Example.com", "stranger@elsewhere.example", BILLING]
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
        smtp.sendmail(SUPPORT, rcpts, raw)
    sent = server.wait_for_sent(start + 1)[start]
    assert sent.rcpt_tos == rcpts
    assert sorted(sent.delivered_to) == [BILLING, SALES]
    for user, expected in ((SALES, 1), (BILLING, 1), (SUPPORT, 0)):
        client = imap_login(server, user)
        try:
            assert len(uids_with_message_id(client, msg_id)) == expected
        finally:
            client.logout()


def test_smtp_auth_is_optional_but_checked(server):
    start = len(server.sent)
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
        smtp.login(SUPPORT, "support")
        smtp.sendmail(SUPPORT, ["customer@example.org"], make_mail()[1])
    assert server.wait_for_sent(start + 1)[start].auth_login == SUPPORT
    with smtplib.SMTP(server.host, server.smtp_port, timeout=10) as smtp:
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.login(SUPPORT, "wrong")
        smtp.sendmail(SUPPORT, ["customer@example.org"], make_mail()[1])
    assert server.wait_for_sent(start + 2)[start + 1].auth_login is None


def test_wait_for_sent_times_out(server):
    with pytest.raises(TimeoutError):
        server.wait_for_sent(len(server.sent) + 1, timeout=0.1)


# --- persistence ----------------------------------------------------------------

def test_data_dir_persists_messages_flags_and_uidvalidity(tmp_path):
    data_dir = tmp_path / "mail"
    msg_id, raw = make_mail()
    with DevMailServer(data_dir=data_dir) as srv:
        ports = (srv.imap_port, srv.smtp_port)
        uid = srv.deliver(SUPPORT, raw)
        with smtplib.SMTP(srv.host, srv.smtp_port, timeout=10) as smtp:
            smtp.sendmail("x@example.org", [SUPPORT], make_mail()[1])
        client = imap_login(srv)
        try:
            info = client.select_folder("INBOX")
            client.add_flags([uid], [b"\\Answered"])
        finally:
            client.logout()
    # Same data dir *and* same ports: what a restarted demo does.
    with DevMailServer(imap_port=ports[0], smtp_port=ports[1],
                       data_dir=data_dir) as srv:
        client = imap_login(srv)
        try:
            again = client.select_folder("INBOX")
            assert again[b"UIDVALIDITY"] == info[b"UIDVALIDITY"]
            assert again[b"EXISTS"] == 2
            assert uids_with_message_id(client, msg_id) == [uid]
            data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"])[uid]
            assert data[b"BODY[]"] == raw
            assert b"\\Answered" in data[b"FLAGS"]
            assert srv.deliver(SUPPORT, raw) > uid + 1
            names = {n for _f, _d, n in client.list_folders()}
            assert {"INBOX", "Sent"} <= names
        finally:
            client.logout()
        assert srv.message_count(SUPPORT) == 3


def test_data_dir_persists_folder_operations(tmp_path):
    """COPY, MOVE, EXPUNGE, CREATE and UID gaps all survive a restart."""
    raws = [make_mail(subject=f"m{i}")[1] for i in range(4)]
    with DevMailServer(data_dir=tmp_path) as srv:
        uids = [srv.deliver(SALES, raw) for raw in raws]
        client = imap_login(srv, SALES)
        try:
            client.create_folder("Archive/2026")
            client.select_folder("INBOX")
            client.copy([uids[0]], "Sent")
            client.move([uids[1]], "Archive/2026")
            client.delete_messages([uids[2]])
            client.expunge()
            before = {folder: client.folder_status(
                folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"])
                for folder in ("INBOX", "Sent", "Archive/2026")}
        finally:
            client.logout()
        time.sleep(0.7)  # let the autosave run once while still serving
        assert (tmp_path / "mailstore.json").exists()
    with DevMailServer(data_dir=tmp_path) as srv:
        client = imap_login(srv, SALES)
        try:
            after = {folder: client.folder_status(
                folder, [b"UIDVALIDITY", b"UIDNEXT", b"MESSAGES"])
                for folder in before}
            assert after == before
            client.select_folder("INBOX")
            kept = client.fetch(client.search(), ["BODY.PEEK[]"])
            assert sorted(kept) == [uids[0], uids[3]]
            assert kept[uids[3]][b"BODY[]"] == raws[3]
            for folder, raw in (("Sent", raws[0]), ("Archive/2026", raws[1])):
                client.select_folder(folder)
                bodies = client.fetch(client.search(), ["BODY.PEEK[]"])
                assert [b[b"BODY[]"] for b in bodies.values()] == [raw]
        finally:
            client.logout()
    blobs = list((tmp_path / "blobs").iterdir())
    assert len(blobs) == 3  # expunged message's blob was removed


# --- demo mail ------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo() -> list[tuple[str, bytes, EmailMessage]]:
    return [(rcpt, raw,
             email.message_from_bytes(raw, policy=email.policy.default))
            for rcpt, raw in demo_messages(now=FIXED_NOW)]


def test_demo_messages_parse_cleanly(demo):
    assert len(demo) >= 12
    customers = {"alice@example.org", "bob@example.org", "zoe@example.org",
                 "jose@example.org", "taro@example.jp"}
    seen_customers = set()
    dates = []
    for rcpt, raw, msg in demo:
        assert rcpt in DEFAULT_USERS
        assert msg["To"].addresses[0].addr_spec == rcpt
        assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
        head = raw.split(b"\r\n\r\n", 1)[0]
        head.decode("ascii")  # headers are 7-bit: RFC 2047 where needed
        for part in msg.walk():
            assert not part.defects, (msg["Message-ID"], part.defects)
            if not part.is_multipart():
                part.get_content()  # decodes (charset + CTE) without error
        assert re.fullmatch(r"<demo-\d\d-[\w.-]+@[\w.-]+>", msg["Message-ID"])
        dates.append(msg["Date"].datetime)
        seen_customers.add(msg["From"].addresses[0].addr_spec)
    assert len({m["Message-ID"] for _, _, m in demo}) == len(demo)
    assert dates == sorted(dates)  # chronological -> UID order == date order
    assert {SUPPORT, SALES, BILLING} == {rcpt for rcpt, _, _ in demo}
    assert customers <= seen_customers


def test_demo_messages_are_deterministic():
    first = demo_messages(now=FIXED_NOW)
    assert first == demo_messages(now=FIXED_NOW)
    other = demo_messages(domain="shop.test", now=FIXED_NOW)
    assert {rcpt.split("@")[1] for rcpt, _ in other} == {"shop.test"}
    assert [email.message_from_bytes(a)["Message-ID"] for _, a in first] == \
        [email.message_from_bytes(b)["Message-ID"] for _, b in
         demo_messages()]


def test_demo_thread_with_quoting(demo):
    by_id = {m["Message-ID"]: m for _, _, m in demo}
    replies = [m for _, _, m in demo if m["In-Reply-To"]]
    assert replies
    threaded = [m for m in replies
                if set(m["References"].split()) & set(by_id)]
    assert len(threaded) >= 2
    alice = next(m for m in threaded
                 if m["From"].addresses[0].addr_spec == "alice@example.org")
    root = by_id[alice["References"].split()[0]]
    assert root["In-Reply-To"] is None
    assert alice["Subject"] == "Re: " + root["Subject"]
    assert alice["References"].split()[-1] == alice["In-Reply-To"]
    text = alice.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert re.search(r"^On .+ wrote:$", text, re.M)
    assert "\n> " in text and "\n>> " in text  # support reply + original
    # Taro's follow-up replies straight to a message in the list.
    assert any(m["In-Reply-To"] in by_id for m in replies)


def test_demo_html_newsletter(demo):
    news = [m for _, _, m in demo if m.get_content_type() ==
            "multipart/alternative" and m.get_body(("html",)) is not None
            and "tracker.example.net/p.gif" in
            m.get_body(("html",)).get_content()]
    assert news
    html = news[0].get_body(("html",)).get_content()
    assert "<table" in html and "style=" in html and "<script" in html
    assert '<img src="https://tracker.example.net/p.gif"' in html
    assert news[0].get_body(("plain",)) is not None


def test_demo_attachments_and_inline_image(demo):
    attachments = {}
    for _, _, msg in demo:
        for part in msg.iter_attachments():
            attachments[part.get_filename()] = part
    kinds = {p.get_content_type() for p in attachments.values()}
    assert {"image/png", "application/pdf"} <= kinds
    pdf = next(p for p in attachments.values()
               if p.get_content_type() == "application/pdf").get_content()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")

    related = [m for _, _, m in demo
               if any(p.get_content_type() == "multipart/related"
                      for p in m.walk())]
    assert related
    msg = related[0]
    html = msg.get_body(("html",)).get_content()
    cid = re.search(r'src="cid:([^"]+)"', html).group(1)
    image = next(p for p in msg.walk() if p["Content-ID"] == f"<{cid}>")
    assert image.get_content_type() == "image/png"
    assert image.get_content_disposition() == "inline"


def test_tiny_binary_generators_are_valid():
    png = tiny_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    pos, chunks = 8, {}
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        data = png[pos + 8:pos + 8 + length]
        crc = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])[0]
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        chunks[kind] = data
        pos += 12 + length
    width, height = struct.unpack(">II", chunks[b"IHDR"][:8])
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 3 * width)
    assert b"IEND" in chunks

    pdf = tiny_pdf("Hello (world)")
    startxref = int(pdf.rsplit(b"startxref\n", 1)[1].split(b"\n")[0])
    xref = pdf[startxref:].split(b"\n")
    assert xref[0] == b"xref"
    for number in range(1, int(xref[1].split()[1])):
        offset = int(xref[2 + number][:10])
        assert pdf[offset:].startswith(b"%d 0 obj" % number)


def test_demo_non_ascii_and_charsets(demo):
    names = {str(m["From"].addresses[0].display_name) for _, _, m in demo}
    assert {"Zoë Müller", "José Núñez", "山田 太郎"} <= names
    raw_from = [raw.split(b"\r\n\r\n")[0] for _, raw, _ in demo]
    assert any(b"From: =?utf-8?" in h for h in raw_from)  # RFC 2047
    charsets = {p.get_content_charset() for _, _, m in demo for p in m.walk()
                if p.get_content_maintype() == "text"}
    assert "iso-8859-1" in charsets
    latin = next(m for _, _, m in demo
                 if m.get_content_charset() == "iso-8859-1")
    assert "Núñez" in latin.get_content()
    japanese = [m for _, _, m in demo if "注文番号" in str(m["Subject"])]
    assert japanese and "山田" in japanese[0].get_content()


def test_demo_business_cases(demo):
    sales = [m for rcpt, _, m in demo if rcpt == SALES and
             "bulk" not in m.get("Precedence", "")]
    assert any(m["In-Reply-To"] and "40" in str(m["Subject"]) for m in sales)
    billing = [m for rcpt, _, m in demo if rcpt == BILLING]
    refund = [m for m in billing if "refund" in str(m["Subject"]).lower()]
    assert refund
    order = re.search(r"#(\d{4})", str(refund[0]["Subject"]))
    assert order and 1001 <= int(order.group(1)) <= 1020
    assert any(m["Auto-Submitted"] == "auto-replied" for _, _, m in demo)


def test_demo_messages_seed_into_server(fresh_server):
    messages = demo_messages(now=FIXED_NOW)
    for rcpt, raw in messages:
        fresh_server.deliver(rcpt, raw)
    for user in DEFAULT_USERS:
        expected = [raw for rcpt, raw in messages if rcpt == user]
        assert fresh_server.message_count(user) == len(expected)
        client = imap_login(fresh_server, user)
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search()
            data = client.fetch(uids, ["BODY.PEEK[]", "ENVELOPE",
                                       "BODYSTRUCTURE"])
            assert [data[u][b"BODY[]"] for u in sorted(uids)] == expected
            assert all(data[u][b"ENVELOPE"].message_id for u in uids)
        finally:
            client.logout()


# --- CLI --------------------------------------------------------------------------

def test_cli_runs_until_interrupted():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared_inbox.mail.devserver",
         "--imap-port", "0", "--smtp-port", "0", "--seed-demo"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        output = "".join(lines)
        imap_port = int(re.search(r"IMAP\s+127\.0\.0\.1:(\d+)", output)[1])
        assert re.search(r"SMTP\s+127\.0\.0\.1:\d+", output)
        assert "support@example.com" in output and "Seeded" in output
        with IMAPClient("127.0.0.1", port=imap_port, ssl=False) as client:
            client.login(SUPPORT, "support")
            assert client.select_folder("INBOX")[b"EXISTS"] > 0
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)  # (a CI run under heavy load took over 10 s)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

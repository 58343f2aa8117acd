"""Ingestion throughput: IMAP fetch limit vs. stdlib parse vs. the app's real poll.

Run from the project root::

    python3 benchmarks/ingest.py                  # 1000 messages into a throwaway Dovecot
    python3 benchmarks/ingest.py --count 3000 --seed 7
    python3 benchmarks/ingest.py --server dev     # in-process DevMailServer instead
    python3 benchmarks/ingest.py --scale          # also (c) at 1k and 10k: peak RSS growth
    python3 benchmarks/ingest.py --big            # plus one 25 MB attachment; memory held for it
    python3 benchmarks/ingest.py --profile cprofile      # profile (c); or --profile pyinstrument
    python3 benchmarks/ingest.py --wal            # (c) again, its SQLite file in WAL mode

It generates a deterministic (``--seed``) mix of messages -- plain text, multipart/alternative
HTML, attachments (mostly small, a few of several MB), charsets utf-8 / iso-8859-1 /
windows-1252 / iso-2022-jp / koi8-r, transfer encodings 7bit / quoted-printable / base64 /
8bit, about 40 % replies of which some thread *only* through References -- appends them to a
local IMAP server (MULTIAPPEND; not timed) and prints messages per second for

  (a) the limit: imapclient, SEARCH UID 1:*, FETCH BODY.PEEK[] in batches of 50, nothing else;
  (a') the same with imaplib's debug trace off (imapclient turns it on, and imaplib then
      builds repr() of every response); the app turns it off too (``_quiet_imaplib``);
  (b) (a) plus ``email.message_from_bytes(raw, policy=email.policy.default)`` and a walk over
      every part calling ``get_content()``;
  (c) the app: ``shared_inbox.mail.imap.poll_mailbox`` on a Flask host app with a SQLite file
      database (run in a fresh subprocess, so its peak RSS is its own);

with (c)/(a), the replies threaded into their thread's root ticket, the peak RSS, and the
client's CPU time per message for (a), (b), (c) (steadier than rates on a loaded machine).

Dovecot (the default, as the reference figures are Dovecot's) needs root and
``/usr/sbin/dovecot``; it runs from a temporary directory on 127.0.0.1 (tests/dovecot.py).
"""
from __future__ import annotations

import argparse
import base64
import email
import email.policy
import json
import os
import quopri
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from email.header import Header
from email.utils import format_datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TESTS_DIR = PROJECT_ROOT / "tests"
for _p in (str(PROJECT_ROOT), str(TESTS_DIR)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

BATCH = 50
PASSWORD = "bench-pass"
BIG_ATTACHMENT = 25 * 1000 * 1000  # bytes, decoded

# ----------------------------------------------------------------------------- generation

TEXTS = {
    "utf-8": [
        "Grüße aus Köln — die Lieferung kam heute, aber ein Teil fehlt.",
        "Merci beaucoup ! J'ai une question à propos de la facture n° 4711.",
        "こんにちは、注文の状況を教えていただけますか？",
        "Привет! Когда будет доставка? ✓ 🎉",
        "Hola, ¿podrían enviarme el recibo? Gracias — Peña",
    ],
    "iso-8859-1": [
        "Bonjour, j'ai reçu ma commande mais l'élément est abîmé.",
        "Grüße aus München, die Rechnung enthält einen Fehler (Größe).",
        "Olá, a encomenda não chegou à morada indicada.",
        "Hej! Jag har frågor om leveransen till Malmö.",
    ],
    "windows-1252": [
        "“Smart quotes” – an en dash, a price of €100 … and ‘single’ ones.",
        "We’re still waiting — the invoice says €49.90 but we paid €39.90.",
        "Can you check order #5521? It’s been “shipped” for two weeks…",
    ],
    "iso-2022-jp": [
        "お世話になっております。注文の件でご連絡いたします。",
        "先日購入した商品が届いておりません。確認をお願いします。",
        "請求書の宛名を変更していただけますでしょうか。",
    ],
    "koi8-r": [
        "Здравствуйте! Мой заказ до сих пор не пришёл.",
        "Добрый день, прошу выставить счёт на нашу компанию.",
        "Спасибо за быстрый ответ, всё работает.",
    ],
}
ASCII_LINES = [
    "Hi there, I ordered the blue widget last week and it has not arrived yet.",
    "Could you please send me a copy of the invoice for my records?",
    "The tracking number you sent does not seem to work on the carrier's site.",
    "Thanks for the quick answer, that solved it.",
    "I would like to change the delivery address to my office.",
    "Is there any discount for orders of more than 20 units?",
    "Please cancel the second item, I only need one.",
    "Our accounting department needs the VAT number on the invoice.",
    "I tried resetting my password but the email never arrives.",
    "Looking forward to hearing from you.",
]
FIRST = ["Anna", "Jörg", "Zoë", "Łukasz", "Renée", "Ivan", "Yuki", "Maria", "John", "Priya",
         "Olaf", "Chloé", "Dmitri", "Aiko", "Sam", "Fatima", "Björn", "Noël", "Kenji", "Ana"]
LAST = ["Müller", "Smith", "Dubois", "Иванов", "山田", "García", "Kowalski", "Nguyen",
        "O'Brien", "Rossi", "Jensen", "Peña", "Schmidt", "Tanaka", "Brown", "Silva"]
SUBJECTS = ["Order {n} not delivered", "Invoice {n} question", "Refund for order {n}",
            "Change of address", "Password reset not working", "Bulk order enquiry",
            "Wrong item in parcel {n}", "Bestellung {n} – Lieferstatus", "Facture n° {n}",
            "注文番号 {n} について", "Заказ {n}", "Problem with my account",
            "Quote request for {n} units", "Damaged item", "Subscription renewal"]
DOMAINS = ["example.org", "example.net", "mail.example.com", "kunde.example.de",
           "client.example.fr", "example.jp", "example.ru"]


def _crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _b64(data: bytes) -> bytes:
    return _crlf(base64.encodebytes(data))


def _header(value: str, charset: str) -> str:
    try:
        value.encode("ascii")
        return value
    except UnicodeEncodeError:
        pass
    cs = charset if charset != "windows-1252" else "utf-8"
    try:
        value.encode(cs)
    except UnicodeEncodeError:
        cs = "utf-8"
    return Header(value, cs).encode(maxlinelen=76)


def _text_part(text: str, charset: str, cte: str, subtype: str = "plain") -> bytes:
    """A complete MIME part (headers + body) with exactly the requested charset and CTE."""
    text = text.replace("\r\n", "\n")
    try:
        data = text.encode(charset)
    except UnicodeEncodeError:
        charset, data = "utf-8", text.encode("utf-8")
    if cte == "7bit" and any(b > 127 for b in data):
        cte = "quoted-printable"
    if cte == "8bit" and charset == "iso-2022-jp":
        cte = "7bit"
    if cte == "quoted-printable":
        body = _crlf(quopri.encodestring(data))
    elif cte == "base64":
        body = _b64(data)
    else:
        body = _crlf(data)
    head = (f"Content-Type: text/{subtype}; charset=\"{charset}\"\r\n"
            f"Content-Transfer-Encoding: {cte}\r\n\r\n")
    return head.encode("ascii") + body


def _multipart(subtype: str, parts: list[bytes], rng: random.Random) -> bytes:
    boundary = f"=_bnd_{rng.getrandbits(64):016x}"
    out = [f"Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\r\n\r\n".encode(),
           b"This is a multi-part message in MIME format.\r\n"]
    for part in parts:
        out.append(f"\r\n--{boundary}\r\n".encode())
        out.append(part)
    out.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(out)


def _attachment(rng: random.Random, size: int, index: int) -> bytes:
    kind = rng.random()
    if kind < 0.15:  # a CSV in quoted-printable or 7bit
        rows = ["sku;name;qty;price"]
        total = 0
        size = min(size, 200_000)  # CSVs stay small; the big ones are binary
        while total < size:
            rows.append(f"{rng.randint(1000, 9999)};Widget {rng.choice(FIRST)};"
                        f"{rng.randint(1, 40)};{rng.randint(1, 999)}.{rng.randint(0, 99):02d}")
            total += len(rows[-1]) + 1
        data = ("\n".join(rows) + "\n").encode()
        return (f"Content-Type: text/csv; charset=\"us-ascii\"; name=\"order-{index}.csv\"\r\n"
                f"Content-Disposition: attachment; filename=\"order-{index}.csv\"\r\n"
                f"Content-Transfer-Encoding: 7bit\r\n\r\n").encode() + _crlf(data)
    data = rng.randbytes(size)
    if kind < 0.55:
        ctype, name = "application/pdf", f"invoice-{index}.pdf"
    elif kind < 0.85:
        ctype, name = "image/jpeg", f"photo_{index}.jpg"
    else:
        ctype, name = "application/vnd.openxmlformats-officedocument.wordprocessingml.document", \
            f"Lieferschein-Größe-{index}.docx"
    if name.isascii():
        disp = f"attachment; filename=\"{name}\""
    else:
        from urllib.parse import quote
        disp = f"attachment; filename*=utf-8''{quote(name)}"
    return (f"Content-Type: {ctype}\r\nContent-Disposition: {disp}\r\n"
            f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + _b64(data)


def _attachment_size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.03:
        return rng.randint(1_000_000, 4_000_000)  # a few up to a few MB
    if r < 0.25:
        return rng.randint(100_000, 600_000)
    return rng.randint(2_000, 80_000)


def generate(count: int, seed: int, big_at: int | None = None):
    """Yields (raw bytes, meta) for ``count`` messages; meta describes the thread."""
    rng = random.Random(seed)
    customers = []
    for i in range(max(count // 3, 5)):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        addr = f"{first.lower().encode('ascii', 'ignore').decode() or 'user'}.{i}@{rng.choice(DOMAINS)}"
        customers.append((f"{first} {last}", addr))
    threads: list[dict] = []  # {"root", "msgs": [(mid, refs)], "subject", "customer", "text"}
    start = datetime.now(timezone.utc) - timedelta(days=20)
    step = timedelta(days=19) / max(count, 1)
    for i in range(count):
        mid = f"<bench.{seed}.{i}.{rng.getrandbits(32):08x}@{rng.choice(DOMAINS)}>"
        is_reply = bool(threads) and rng.random() < 0.40
        charset = rng.choices(list(TEXTS) + ["us-ascii"], weights=[35, 15, 15, 8, 7, 20])[0]
        if charset == "iso-2022-jp":
            cte = rng.choice(["7bit", "7bit", "base64"])
        elif charset == "us-ascii":
            cte = rng.choice(["7bit", "7bit", "quoted-printable"])
        else:
            cte = rng.choice(["quoted-printable", "base64", "8bit"])
        lines = [rng.choice(ASCII_LINES) for _ in range(rng.randint(2, 12))]
        if charset != "us-ascii":
            lines += [rng.choice(TEXTS[charset]) for _ in range(rng.randint(1, 6))]
            rng.shuffle(lines)
        headers: list[str] = []
        meta = {"mid": mid, "reply": is_reply, "how": None}
        if is_reply:
            thread = rng.choice(threads[-200:])
            parent_mid, parent_refs = thread["msgs"][-1] if rng.random() < 0.8 \
                else rng.choice(thread["msgs"])
            refs = (parent_refs + [parent_mid])[-10:]
            name, addr = thread["customer"]
            if rng.random() < 0.1:  # a colleague of the customer joins in
                name, addr = rng.choice(customers)
            subject = "Re: " + thread["subject"]
            how = rng.choices(["in-reply-to", "references-only", "unknown-in-reply-to"],
                              weights=[60, 20, 20])[0]
            if how == "in-reply-to":
                headers.append(f"In-Reply-To: {parent_mid}")
            elif how == "unknown-in-reply-to":
                # e.g. the agent answered from Outlook: the customer replies to a mail we
                # never saw, which references the conversation.
                unknown = f"<outlook.{rng.getrandbits(48):012x}@agent.example.com>"
                headers.append(f"In-Reply-To: {unknown}")
                refs = (refs + [unknown])[-10:]
            headers.append("References: " + "\r\n ".join(refs))
            quoted = "\n".join("> " + ln for ln in thread["text"].splitlines()[:15])
            text = "\n".join(lines) + f"\n\nOn {format_datetime(start)}, support wrote:\n{quoted}\n"
            meta.update(root=thread["root"], how=how)
            thread["msgs"].append((mid, refs))
            thread["text"] = text
        else:
            name, addr = rng.choice(customers)
            subject = rng.choice(SUBJECTS).format(n=rng.randint(10000, 99999))
            text = "\n".join(lines) + f"\n\n-- \n{name}\n"
            threads.append({"root": mid, "msgs": [(mid, [])], "subject": subject,
                            "customer": (name, addr), "text": text})
            meta["root"] = mid

        # body structure
        body_part = _text_part(text, charset if charset != "us-ascii" else "us-ascii", cte)
        if rng.random() < 0.35:
            html_lines = "".join(f"<p>{ln}</p>" for ln in text.splitlines() if ln
                                 and not ln.startswith(">"))
            html = (f"<html><head><style>p{{margin:0}}</style></head><body>"
                    f"<div style=\"font-family:Arial\">{html_lines}</div>"
                    f"<img src=\"https://tracker.example.net/p.gif?u={i}\" width=1 height=1>"
                    f"<script>alert(1)</script></body></html>")
            html_cs = charset if charset not in ("us-ascii", "iso-2022-jp") else "utf-8"
            html_part = _text_part(html, html_cs, rng.choice(["quoted-printable", "base64"]),
                                   "html")
            body_part = _multipart("alternative", [body_part, html_part], rng)
        attachments = []
        if big_at is not None and i == big_at:  # own rng: the rest of the mix is unchanged
            attachments.append(_attachment_big(random.Random(seed + 25)))
            meta["big"] = True
        if rng.random() < 0.20:
            for k in range(rng.choices([1, 2, 3], weights=[70, 20, 10])[0]):
                attachments.append(_attachment(rng, _attachment_size(rng), i * 10 + k))
        if rng.random() < 0.01:  # a forwarded message
            fwd = (f"From: someone@example.com\r\nSubject: Fwd original {i}\r\n"
                   f"Message-ID: <fwd.{i}@example.com>\r\n\r\nForwarded body.\r\n").encode()
            attachments.append(b"Content-Type: message/rfc822\r\n\r\n" + fwd)
        if attachments:
            body_part = _multipart("mixed", [body_part] + attachments, rng)

        date = start + step * i
        head = [
            f"Return-Path: <{addr}>",
            f"Received: from mx.{addr.split('@')[1]} (mx [192.0.2.{i % 250 + 1}]) by "
            f"mail.example.com with ESMTPS id {rng.getrandbits(40):010x}; {format_datetime(date)}",
            f"From: {_header(name, charset if charset != 'us-ascii' else 'utf-8')} <{addr}>",
            "To: Support <support@example.com>",
            f"Subject: {_header(subject, charset if charset != 'us-ascii' else 'utf-8')}",
            f"Date: {format_datetime(date)}",
            f"Message-ID: {mid}",
            *headers,
            "MIME-Version: 1.0",
            f"X-Mailer: {rng.choice(['Thunderbird 115', 'Outlook 16.0', 'Apple Mail', 'Gmail'])}",
        ]
        raw = "\r\n".join(head).encode("ascii") + b"\r\n" + body_part
        yield raw, meta


def _attachment_big(rng: random.Random) -> bytes:
    # One 25 MB attachment (random bytes; ~34 MB base64 on the wire).
    data = rng.randbytes(BIG_ATTACHMENT)
    return (b"Content-Type: application/zip\r\n"
            b"Content-Disposition: attachment; filename=\"backup.zip\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n") + _b64(data)


# ----------------------------------------------------------------------------- servers

class Server:
    """A local IMAP server with one user per mailbox we fill."""

    def __init__(self, kind: str, users: list[str]):
        self.kind = kind
        users = {u: PASSWORD for u in users}
        if kind == "dovecot":
            from dovecot import Dovecot, available
            if not available():
                sys.exit("Dovecot needs root and /usr/sbin/dovecot; use --server dev")
            self._impl = Dovecot(users).start()
            self.port = self._impl.port
        else:
            from shared_inbox.mail.devserver import DevMailServer
            self._impl = DevMailServer(users=users).start()
            self.port = self._impl.imap_port

    def client(self, user: str):
        import imapclient
        c = imapclient.IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=120)
        c.login(user, PASSWORD)
        return c

    def fill(self, user: str, messages) -> int:
        """MULTIAPPEND in chunks (a few MB each); returns the number appended."""
        c = self.client(user)
        n = 0
        chunk, size = [], 0
        try:
            for raw in messages:
                chunk.append(raw)
                size += len(raw)
                if len(chunk) >= 200 or size > 8_000_000:
                    c.multiappend("INBOX", chunk)
                    n += len(chunk)
                    chunk, size = [], 0
            if chunk:
                c.multiappend("INBOX", chunk)
                n += len(chunk)
        finally:
            c.logout()
        return n

    def stop(self):
        self._impl.stop()


# ----------------------------------------------------------------------------- (a) and (b)

def fetch_all(server: Server, user: str, on_message=None,
              quiet: bool = False) -> tuple[int, float, int]:
    """(messages, seconds, bytes): SEARCH UID 1:*, FETCH BODY.PEEK[] in batches of 50.
    ``fetch_all.cpu`` is this thread's CPU seconds for it (the client side only)."""
    t0 = time.perf_counter()
    c0 = time.thread_time()
    c = server.client(user)
    if quiet:  # as the app does (mail/imap.py _quiet_imaplib): no repr() of every response
        c._imap.debug = 0
    c.select_folder("INBOX", readonly=True)
    uids = sorted(c.search(["UID", "1:*"]))
    n = nbytes = 0
    for start in range(0, len(uids), BATCH):
        data = c.fetch(uids[start:start + BATCH], ["BODY.PEEK[]"])
        for uid in uids[start:start + BATCH]:
            raw = data[uid][b"BODY[]"]
            nbytes += len(raw)
            if on_message is not None:
                on_message(raw)
            n += 1
    c.logout()
    fetch_all.cpu = time.thread_time() - c0
    return n, time.perf_counter() - t0, nbytes


def stdlib_parse(raw: bytes) -> None:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        if part.is_multipart():
            continue
        try:
            part.get_content()
        except (LookupError, ValueError, KeyError):
            part.get_payload(decode=True)


# ----------------------------------------------------------------------------- (c): child

def peak_rss_kb() -> int:
    """Peak RSS of this process in kB.

    VmHWM (Linux) belongs to the current address space. ``ru_maxrss`` is not usable in a
    child: Linux carries it across fork+exec, so a child's ru_maxrss starts at the parent's.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _make_app(tmp: Path, max_size: int | None, database_url: str | None = None):
    import sqlalchemy as sa
    from cryptography.fernet import Fernet
    from flask import Flask
    from flask_login import LoginManager, UserMixin
    from flask_sqlalchemy import SQLAlchemy

    from shared_inbox import SharedInbox

    db = SQLAlchemy()

    class User(UserMixin, db.Model):
        __tablename__ = "users"
        id = sa.Column(sa.Integer, primary_key=True)
        email = sa.Column(sa.String(255), unique=True, nullable=False)

    app = Flask("bench_host", instance_path=str(tmp / "instance"))
    app.config.update(
        SECRET_KEY="bench-secret",
        SQLALCHEMY_DATABASE_URI=database_url or f"sqlite:///{tmp / 'host.db'}",
        SHARED_INBOX_ATTACHMENT_DIR=str(tmp / "files"),
        SHARED_INBOX_ENCRYPTION_KEYS=[Fernet.generate_key().decode()],
        SHARED_INBOX_SEND_MAIL=False,
    )
    if max_size:
        app.config["SHARED_INBOX_MAX_MESSAGE_SIZE"] = max_size
    db.init_app(app)
    LoginManager(app)
    inbox = SharedInbox()
    inbox.init_app(app, db=db, user_model=User)
    with app.app_context():
        if database_url:  # a throwaway database of the benchmark's: start empty
            db.drop_all()  # (the inbox's tables are in the same metadata)
        db.metadata.create_all(db.engine, tables=[User.__table__])
        inbox.create_all()
    return app, db, inbox


def child_poll(args) -> dict:
    """Run (c) once in this (fresh) process; returns figures as a dict."""
    import sqlalchemy as sa

    from shared_inbox.mail import imap as imap_mod
    from shared_inbox.models import utcnow

    tmp = Path(tempfile.mkdtemp(prefix="si-bench-app-"))
    try:
        app, db, inbox = _make_app(tmp, args.max_size, args.database_url)
        out: dict = {}
        with app.app_context():
            m = inbox.models
            mailbox = m.Mailbox(
                name="Bench", email_address=args.user, imap_host="127.0.0.1",
                imap_port=args.port, imap_security="plain", imap_username=args.user,
                import_since=utcnow() - timedelta(days=3650),
            )
            mailbox.imap_password = PASSWORD
            db.session.add(mailbox)
            db.session.commit()

            if args.wal:  # the benchmark's own SQLite file, never the host's default
                with db.engine.connect() as conn:
                    conn.exec_driver_sql("PRAGMA journal_mode=WAL")

                @sa.event.listens_for(db.engine, "connect")
                def _synchronous(dbapi_conn, _record):
                    dbapi_conn.execute("PRAGMA synchronous=NORMAL")
                db.engine.dispose()

            counts = {"sql": 0, "commits": 0, "fsync": 0, "fsync_s": 0.0}

            @sa.event.listens_for(db.engine, "before_cursor_execute")
            def _count(*_a, **_k):
                counts["sql"] += 1

            @sa.event.listens_for(db.engine, "commit")
            def _commit(*_a, **_k):
                counts["commits"] += 1

            real_fsync = os.fsync

            def fsync(fd):
                t = time.perf_counter()
                real_fsync(fd)
                counts["fsync"] += 1
                counts["fsync_s"] += time.perf_counter() - t
            os.fsync = fsync

            big = {}
            if args.trace_big:
                # Two phases hold the big mail: the hot path (the fetched batch, its raw
                # copy stored) and the body parse after the poll (raw read back, attachments
                # streamed to storage). Peak traced memory of each, from its entry.
                import tracemalloc

                from shared_inbox.services import accept as accept_mod
                from shared_inbox.services import complete as complete_mod

                def traced(fn, label):
                    def wrapper(*a, **kw):
                        entry, before = tracemalloc.get_traced_memory()
                        tracemalloc.reset_peak()
                        r0 = peak_rss_kb()
                        try:
                            return fn(*a, **kw)
                        finally:
                            _cur, peak = tracemalloc.get_traced_memory()
                            big[label] = dict(entry=entry, before_peak=before, peak=peak,
                                              extra=peak - entry, rss_before_kb=r0,
                                              rss_after_kb=peak_rss_kb())
                    return wrapper
                accept_mod.BatchAcceptor.ingest_items = traced(
                    accept_mod.BatchAcceptor.ingest_items, "accept")
                complete_mod.complete_messages = traced(complete_mod.complete_messages,
                                                        "complete")
                tracemalloc.start()

            rss0 = peak_rss_kb()
            ru0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            profiler = None
            if args.profile == "cprofile":
                import cProfile
                profiler = cProfile.Profile()
                profiler.enable()
            elif args.profile == "pyinstrument":
                import pyinstrument
                profiler = pyinstrument.Profiler(interval=0.0005)
                profiler.start()
            sync_wall = [0.0]
            storage = app.extensions["shared_inbox"].storage
            real_sync = getattr(storage, "sync", None)
            if real_sync is not None:
                def timed_sync():
                    t = time.perf_counter()
                    try:
                        real_sync()
                    finally:
                        sync_wall[0] += time.perf_counter() - t
                storage.sync = timed_sync
            # Two phases: the poll commits the mail from its headers (accept), then parses
            # the bodies (imap._complete_bodies); time both.
            phase = {}
            real_complete = imap_mod._complete_bodies

            def timed_complete(mb_):
                phase["accepted_at"], phase["accepted_cpu"] = time.perf_counter(), time.thread_time()
                try:
                    return real_complete(mb_)
                finally:
                    phase["completed_at"] = time.perf_counter()
            imap_mod._complete_bodies = timed_complete
            t0 = time.perf_counter()
            c0 = time.thread_time()
            result = imap_mod.poll_mailbox(mailbox)
            cpu = time.thread_time() - c0
            elapsed = time.perf_counter() - t0
            imap_mod._complete_bodies = real_complete
            accept_s = phase.get("accepted_at", t0 + elapsed) - t0
            accept_cpu = phase.get("accepted_cpu", c0 + cpu) - c0
            if profiler is not None:
                if args.profile == "cprofile":
                    profiler.disable()
                    import pstats
                    profiler.dump_stats(args.profile_out)
                    st = pstats.Stats(args.profile_out, stream=sys.stderr)
                    st.sort_stats("cumulative").print_stats(45)
                    st.sort_stats("tottime").print_stats(35)
                else:
                    profiler.stop()
                    sys.stderr.write(profiler.output_text(unicode=True, color=False,
                                                          show_all=False))
            rss1 = peak_rss_kb()
            ru1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            if args.trace_big:
                tracemalloc.stop()
                big["raw_size"] = db.session.scalar(sa.select(sa.func.max(m.Message.raw_size)))
            os.fsync = real_fsync

            # Threading: a reply is right when its Message row is in its root's ticket.
            ticket_of = dict(db.session.execute(
                sa.select(m.Message.message_id, m.Message.ticket_id)).all())
            meta = json.loads(Path(args.meta).read_text()) if args.meta else []
            replies = [x for x in meta if x["reply"]]
            ok = sum(1 for x in replies
                     if x["mid"].strip("<>") in ticket_of
                     and ticket_of.get(x["mid"].strip("<>")) == ticket_of.get(x["root"].strip("<>")))
            by_how: dict[str, list[int]] = {}
            for x in replies:
                right = ticket_of.get(x["mid"].strip("<>")) == ticket_of.get(x["root"].strip("<>"))
                by_how.setdefault(x["how"], [0, 0])
                by_how[x["how"]][0] += int(right and x["mid"].strip("<>") in ticket_of)
                by_how[x["how"]][1] += 1
            roots = [x["root"].strip("<>") for x in meta if not x["reply"]]
            merged_roots = len(roots) - len({ticket_of.get(r) for r in roots})
            out.update(
                ingested=result.ingested, skipped=result.skipped, error=result.error,
                seconds=elapsed, rate=result.ingested / elapsed if elapsed else 0.0,
                cpu=cpu, accept_seconds=accept_s, accept_cpu=accept_cpu,
                accept_rate=result.ingested / accept_s if accept_s else 0.0, sync_seconds=sync_wall[0],
                maxrss_before_kb=rss0, maxrss_kb=rss1, ru_maxrss_before_kb=ru0, ru_maxrss_kb=ru1,
                threaded=ok, replies=len(replies), by_how=by_how, merged_roots=merged_roots,
                messages=db.session.scalar(sa.select(sa.func.count()).select_from(m.Message)),
                tickets=db.session.scalar(sa.select(sa.func.count()).select_from(m.Ticket)),
                attachments=db.session.scalar(
                    sa.select(sa.func.count()).select_from(m.Attachment)),
                bodies_pending=db.session.scalar(sa.select(sa.func.count()).select_from(
                    m.Message).where(m.Message.body_pending.is_(True))),
                bodies_empty=db.session.scalar(sa.select(sa.func.count()).select_from(
                    m.Message).where(m.Message.body_text == "", m.Message.body_html.is_(None))),
                snippets_empty=db.session.scalar(sa.select(sa.func.count()).select_from(
                    m.Ticket).where(m.Ticket.snippet == "")),
                sql=counts["sql"], commits=counts["commits"], fsyncs=counts["fsync"],
                fsync_seconds=counts["fsync_s"], big=big,
            )
        return out
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_child(port: int, user: str, meta_path: str | None, *, max_size=None,
              trace_big=False, profile=None, profile_out=None, wal=False,
              database_url=None) -> dict:
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--user", user]
    if database_url:
        cmd += ["--database-url", database_url]
    if wal:
        cmd += ["--wal"]
    if meta_path:
        cmd += ["--meta", meta_path]
    if max_size:
        cmd += ["--max-size", str(max_size)]
    if trace_big:
        cmd += ["--trace-big"]
    if profile:
        cmd += ["--profile", profile, "--profile-out", profile_out]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None if profile else subprocess.PIPE,
                          text=True, cwd=PROJECT_ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr or "")
        raise SystemExit(f"child failed ({proc.returncode})")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main

def mb(kb_or_bytes: float, unit="kb") -> str:
    b = kb_or_bytes * 1024 if unit == "kb" else kb_or_bytes
    return f"{b / 1e6:.1f} MB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--server", choices=["dovecot", "dev"], default="dovecot")
    p.add_argument("--scale", action="store_true", help="(c) at 1k and 10k: peak RSS growth")
    p.add_argument("--big", action="store_true", help="add one 25 MB attachment")
    p.add_argument("--profile", choices=["cprofile", "pyinstrument"])
    p.add_argument("--profile-out", default="/tmp/si-ingest.prof")
    p.add_argument("--database-url",
                   help="(c) into this database instead of a SQLite file (its tables are "
                        "DROPPED first: a throwaway database only), e.g. PostgreSQL")
    p.add_argument("--wal", action="store_true",
                   help="(c) again with PRAGMA journal_mode=WAL, synchronous=NORMAL")
    # internal: the (c) child
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--user", help=argparse.SUPPRESS)
    p.add_argument("--meta", help=argparse.SUPPRESS)
    p.add_argument("--max-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--trace-big", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(child_poll(args)))
        return 0

    users = ["bench@example.com"]
    if args.scale:
        users += ["s1k@example.com", "s10k@example.com"]
    if args.big:
        users += ["big@example.com"]
    tmp = Path(tempfile.mkdtemp(prefix="si-bench-"))
    server = Server(args.server, users)
    print(f"server: {args.server} on 127.0.0.1:{server.port}; {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}")
    try:
        t0 = time.perf_counter()
        big_at = args.count // 2 if args.big else None
        metas, total = [], 0

        def bench_msgs():
            nonlocal total
            for raw, meta in generate(args.count, args.seed, big_at):
                metas.append(meta)
                total += len(raw)
                yield raw
        server.fill(users[0], bench_msgs())
        meta_path = tmp / "meta.json"
        meta_path.write_text(json.dumps(metas))
        replies = sum(1 for x in metas if x["reply"])
        print(f"generated and appended {len(metas)} messages ({total / 1e6:.1f} MB, {replies} "
              f"replies: " + ", ".join(
                  f"{h} {sum(1 for x in metas if x['how'] == h)}"
                  for h in ("in-reply-to", "references-only", "unknown-in-reply-to"))
              + f") in {time.perf_counter() - t0:.1f} s (not measured)")

        fetch_all(server, users[0])  # warm the server's caches; not measured
        n, secs, nbytes = fetch_all(server, users[0])
        rate_a, cpu_a = n / secs, fetch_all.cpu
        print(f"(a) fetch only (imapclient, BODY.PEEK[], batches of {BATCH}): "
              f"{rate_a:8.1f} msgs/s  ({n} msgs, {nbytes / 1e6:.1f} MB in {secs:.2f} s)")
        n, secs, _ = fetch_all(server, users[0], quiet=True)
        print(f"(a') the same without imaplib's debug repr() of each response (as the app): "
              f"{n / secs:8.1f} msgs/s  ({secs:.2f} s)")
        n, secs, _ = fetch_all(server, users[0], stdlib_parse)
        rate_b, cpu_b = n / secs, fetch_all.cpu
        print(f"(b) fetch + stdlib email parse + get_content():       "
              f"{rate_b:8.1f} msgs/s  ({secs:.2f} s)")

        max_size = 64 * 1024 * 1024 if args.big else None
        c = run_child(server.port, users[0], str(meta_path), max_size=max_size,
                      profile=args.profile, profile_out=args.profile_out,
                      database_url=args.database_url)
        label = "(c) app: poll_mailbox (" + (
            args.database_url.split("://")[0] if args.database_url else "SQLite file DB") + ")"
        if args.profile:
            label += f" [under {args.profile}: slower than normal]"
        print(f"{label}:       {c['rate']:8.1f} msgs/s  ({c['ingested']} ingested, "
              f"{c['skipped']} skipped, error={c['error']}, {c['seconds']:.2f} s)")
        print(f"    {c['messages']} messages, {c['tickets']} tickets, {c['attachments']} "
              f"attachments ({c['bodies_pending']} bodies still to parse, {c['bodies_empty']} "
              f"without text or HTML, {c['snippets_empty']} tickets without a snippet); {c['sql']} SQL statements ({c['sql'] / max(c['ingested'], 1):.1f}"
              f"/msg), {c['commits']} commits ({c['commits'] / max(c['ingested'], 1):.1f}/msg), "
              f"{c['fsyncs']} storage fsyncs taking {c['fsync_seconds']:.2f} s summed over "
              f"threads, {c['sync_seconds']:.2f} s wall in storage.sync")
        print(f"    of which the hot path (mail committed, threaded and listed in the inbox "
              f"from its headers): {c['accept_seconds']:.2f} s = {c['accept_rate']:.1f} msgs/s; "
              f"then parsing bodies, attachments and quotes: "
              f"{c['seconds'] - c['accept_seconds']:.2f} s")
        print(f"(c)/(a): {100 * c['rate'] / rate_a:.1f} % until every body is parsed; "
              f"hot path {100 * c['accept_rate'] / rate_a:.1f} %   (target >= 50 %)")
        print(f"client CPU per message (this process/thread only; less sensitive to other load "
              f"than the rates): (a) {1000 * cpu_a / n:.2f} ms, (b) {1000 * cpu_b / n:.2f} ms, "
              f"(c) {1000 * c['cpu'] / max(c['ingested'], 1):.2f} ms (hot path "
              f"{1000 * c['accept_cpu'] / max(c['ingested'], 1):.2f} ms); os.getloadavg() "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        if args.wal:
            # A fresh database in a fresh child; the messages are fetched again.
            w = run_child(server.port, users[0], str(meta_path), max_size=max_size, wal=True)
            print(f"(c) with WAL + synchronous=NORMAL:           {w['rate']:8.1f} msgs/s  "
                  f"({w['ingested']} ingested, {w['seconds']:.2f} s, {w['commits']} commits); "
                  f"(c)/(a) {100 * w['rate'] / rate_a:.1f} %")
        print(f"(b)/(a): {100 * rate_b / rate_a:.1f} %")
        print(f"threading: {c['threaded']}/{c['replies']} replies in their thread's ticket ("
              + ", ".join(f"{h}: {v[0]}/{v[1]}" for h, v in sorted(c["by_how"].items()))
              + f"); {c['merged_roots']} thread roots wrongly merged")
        print(f"peak RSS of (c) at {args.count}: {mb(c['maxrss_kb'])} (VmHWM; after set-up, "
              f"before polling: {mb(c['maxrss_before_kb'])}); ru_maxrss {mb(c['ru_maxrss_kb'])} "
              f"(inherits the parent's {mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)} "
              f"across exec)")
        if args.big:
            print("    note: the message with the 25 MB attachment is ~34 MB on the wire, over the "
                  "default SHARED_INBOX_MAX_MESSAGE_SIZE (25 MiB), which would make it a "
                  "placeholder; the benchmark sets 64 MiB")

        if args.scale:
            peaks = {}
            for label_n, user in ((1000, users[1]), (10_000, users[2])):
                sub_meta = tmp / f"meta-{label_n}.json"
                sub = []

                def msgs(count=label_n, sub=sub):
                    for raw, meta in generate(count, args.seed):
                        sub.append(meta)
                        yield raw
                t1 = time.perf_counter()
                server.fill(user, msgs())
                sub_meta.write_text(json.dumps(sub))
                print(f"--scale: appended {label_n} messages in {time.perf_counter() - t1:.1f} s")
                r = run_child(server.port, user, str(sub_meta))
                peaks[label_n] = r
                print(f"--scale: (c) at {label_n:>6}: {r['rate']:7.1f} msgs/s, peak RSS "
                      f"{mb(r['maxrss_kb'])} (before polling {mb(r['maxrss_before_kb'])}; "
                      f"ru_maxrss {mb(r['ru_maxrss_kb'])}), "
                      f"threading {r['threaded']}/{r['replies']}, {r['seconds']:.1f} s")
            growth = (peaks[10_000]["maxrss_kb"] - peaks[1000]["maxrss_kb"]) * 1024 / 1e6
            polled = ((peaks[10_000]["maxrss_kb"] - peaks[10_000]["maxrss_before_kb"])
                      - (peaks[1000]["maxrss_kb"] - peaks[1000]["maxrss_before_kb"])) * 1024 / 1e6
            print(f"--scale: peak RSS growth 1k -> 10k: {growth:+.1f} MB   (target < 50 MB); "
                  f"growth of the part added while polling: {polled:+.1f} MB")

        if args.big:
            t1 = time.perf_counter()
            big_raw = None
            for raw, meta in generate(1, args.seed + 99, big_at=0):
                big_raw = raw
            server.fill(users[-1], [big_raw])
            del big_raw
            print(f"--big: appended one message with a {BIG_ATTACHMENT / 1e6:.0f} MB attachment "
                  f"in {time.perf_counter() - t1:.1f} s")
            r = run_child(server.port, users[-1], None, max_size=64 * 1024 * 1024,
                          trace_big=True)
            b = r["big"]
            if not b.get("accept") or not b.get("complete"):
                print(f"--big: the message was not ingested as expected: {r}")
            else:
                att = BIG_ATTACHMENT
                a, c = b["accept"], b["complete"]
                print(f"--big: raw message {b['raw_size'] / 1e6:.1f} MB, attachment "
                      f"{att / 1e6:.1f} MB; the poll took {r['seconds']:.2f} s")
                print(f"--big: tracemalloc: peak during the IMAP fetch {a['before_peak'] / 1e6:.1f}"
                      f" MB; hot path (held on entry {a['entry'] / 1e6:.1f} MB): peak "
                      f"{a['peak'] / 1e6:.1f} MB = {a['peak'] / att:.2f}x the attachment, "
                      f"{a['extra'] / 1e6:.1f} MB = {a['extra'] / att:.2f}x on top of the "
                      f"fetched bytes   (target: <= 2x)")
                print(f"--big: parsing the body after the poll (held on entry "
                      f"{c['entry'] / 1e6:.1f} MB): peak {c['peak'] / 1e6:.1f} MB = "
                      f"{c['peak'] / att:.2f}x the attachment   (target: <= 2x)")
                print(f"--big: RSS: peak before polling {mb(r['maxrss_before_kb'])}, after "
                      f"the hot path {mb(a['rss_after_kb'])}, after the body "
                      f"{mb(c['rss_after_kb'])}: +"
                      f"{(c['rss_after_kb'] - r['maxrss_before_kb']) * 1024 / att:.2f}x "
                      f"the attachment over the whole poll (RSS includes tracemalloc overhead)")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

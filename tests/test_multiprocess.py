"""Several processes against one PostgreSQL while a mailbox receives 1,000 messages.

gunicorn with 4 workers, each running the background scheduler (SHARED_INBOX_SCHEDULER=True,
polling every second), plus two ``flask inbox run-worker`` processes, all poll the same
mailbox on the development IMAP server while mail keeps arriving. Afterwards every message is
stored exactly once, and the lease log shows that no two pollers ever held the mailbox at the
same moment.

The lease log is written by the app module each process loads: it records, with the
process's role, when a poller *acquired* the lease (after the database said yes) and when it
is about to *release* it (before the database is told). If the lease works, those intervals
can never overlap; if it did not, they would.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from types import SimpleNamespace

import pytest
import sqlalchemy as sa

from conftest import POSTGRES_URL, require
from shared_inbox.models import utcnow

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MESSAGES = 1000
ADDRESS = "support@example.com"

APP_MODULE = textwrap.dedent('''
    """The test's host app with the scheduler on, and a lease log (see the test docstring)."""
    import os
    import sys
    import time
    from pathlib import Path

    from hosts import Host

    import shared_inbox.mail.imap as imap

    _host = Host(database_url=os.environ["SI_MP_DB"], tmp_path=Path(os.environ["SI_MP_DIR"]),
                 config={"TESTING": False, "SHARED_INBOX_SCHEDULER": True,
                         "SHARED_INBOX_POLL_INTERVAL": 1, "SHARED_INBOX_FETCH_BATCH_SIZE": 25})
    app = _host.app

    _ROLE = "gunicorn" if "gunicorn" in sys.argv[0] or "gunicorn" in " ".join(sys.argv) \\
        else "run-worker"
    _LOG = os.environ["SI_MP_LEASE_LOG"]
    _take, _release = imap._take_lease, imap._release_lease


    def _write(event, sync, owner):
        line = f"{event} {_ROLE} {os.getpid()} {owner} {sync.mailbox_id} {time.time():.6f}\\n"
        fd = os.open(_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)


    def _logged_take(sync, owner):
        taken = _take(sync, owner)
        if taken:
            _write("acquire", sync, owner)
        return taken


    def _logged_release(sync, owner):
        _write("release", sync, owner)
        _release(sync, owner)


    imap._take_lease, imap._release_lease = _logged_take, _logged_release
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Customer {n} <c{n % 50}@example.org>"
    msg["To"] = "support@example.com"
    msg["Subject"] = f"Order question {n}"
    msg["Message-ID"] = f"<mp-{n}@example.org>"
    msg.set_content(f"Message number {n}.")
    return bytes(msg)


def _intervals(log_path: Path):
    """(start, end, owner, role) of every time a poller held a mailbox's lease."""
    open_at: dict[tuple, tuple] = {}
    intervals = []
    for line in log_path.read_text().splitlines():
        event, role, _pid, owner, mailbox, when = line.split(" ")
        key = (owner, mailbox)
        if event == "acquire":
            open_at.setdefault(key, (float(when), role))  # a renewal keeps the first start
        else:
            start, role = open_at.pop(key)
            intervals.append((start, float(when), owner, role, mailbox))
    for (owner, mailbox), (start, role) in open_at.items():  # still held when stopped
        intervals.append((start, float("inf"), owner, role, mailbox))
    return sorted(intervals)


@pytest.fixture
def pg_host(make_host, database):
    if database != "postgresql":
        require("PostgreSQL (SHARED_INBOX_TEST_DATABASE_URL)", bool(POSTGRES_URL))
        pytest.skip("several processes need PostgreSQL; this run covers it on PostgreSQL")
    host = make_host()
    host.create_tables()
    return host


@pytest.fixture
def imap_server(mail_server):
    """Dovecot when installed (a real server in processes of its own), else the in-process
    development server; ``deliver(raws)`` appends mail to support@'s INBOX."""
    import dovecot

    if not dovecot.available():
        yield SimpleNamespace(port=mail_server.imap_port, password="support",
                              deliver=lambda raws: [mail_server.deliver(ADDRESS, r) for r in raws])
        return
    server = dovecot.Dovecot({ADDRESS: "support-pw"}).start()
    import imapclient

    client = imapclient.IMAPClient("127.0.0.1", port=server.port, ssl=False)
    client.login(ADDRESS, "support-pw")

    def deliver(raws):
        for raw in raws:
            client.append("INBOX", raw)

    try:
        yield SimpleNamespace(port=server.port, password="support-pw", deliver=deliver)
    finally:
        client.logout()
        server.stop()


def test_four_gunicorn_workers_and_two_run_workers_store_every_message_once(pg_host,
                                                                            imap_server):
    pytest.importorskip("gunicorn", reason="pip install gunicorn (in the test extra)")
    host = pg_host
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Support", email_address="support@example.com",
                            imap_host="127.0.0.1", imap_port=imap_server.port,
                            imap_security="plain", imap_username="support@example.com",
                            import_since=utcnow() - timedelta(days=1))
        mailbox.imap_password = imap_server.password
        host.db.session.add(mailbox)
        host.db.session.commit()
        host.db.session.remove()

    directory = Path(host.app.config["SHARED_INBOX_ATTACHMENT_DIR"]).parent
    (directory / "mp_app.py").write_text(APP_MODULE)
    lease_log = directory / "lease.log"
    env = dict(os.environ)
    env.update({
        "SI_MP_DB": host.app.config["SQLALCHEMY_DATABASE_URI"], "SI_MP_DIR": str(directory),
        "SI_MP_LEASE_LOG": str(lease_log), "FLASK_APP": "mp_app:app",
        "PYTHONPATH": os.pathsep.join([str(directory), str(REPO / "tests"), str(REPO)]),
        "PYTHONWARNINGS": "ignore",
    })
    port = _free_port()
    logs = open(directory / "processes.log", "wb")
    processes = [subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "4", "--bind", f"127.0.0.1:{port}",
         "--timeout", "120", "--graceful-timeout", "5", "mp_app:app"],
        env=env, cwd=directory, stdout=logs, stderr=logs)]
    for _ in range(2):
        processes.append(subprocess.Popen([sys.executable, "-m", "flask", "inbox", "run-worker"],
                                          env=env, cwd=directory, stdout=logs, stderr=logs))

    def count() -> int:
        with host.app.app_context():
            try:
                return host.db.session.scalar(sa.select(sa.func.count()).select_from(m.Message))
            finally:
                host.db.session.remove()

    try:
        # Wake every gunicorn worker: the scheduler starts at a worker's first request.
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=5).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.3)

        def knock():
            for _ in range(10):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=30).read()

        knockers = [threading.Thread(target=knock) for _ in range(8)]
        for t in knockers:
            t.start()

        # The mailbox receives 1,000 messages while all of them poll.
        began = time.monotonic()
        for start in range(1, MESSAGES + 1, 50):
            imap_server.deliver([mail(n) for n in range(start, start + 50)])
            time.sleep(0.2)
        for t in knockers:
            t.join()
        delivered_after = time.monotonic() - began

        waited = time.monotonic()
        while count() < MESSAGES and time.monotonic() < waited + 240:
            time.sleep(0.5)
        ingest_seconds = time.monotonic() - waited
        time.sleep(2)  # anything still in flight would land now
        logs.flush()
        before_shutdown = (directory / "processes.log").stat().st_size
    finally:
        for proc in processes:
            proc.send_signal(signal.SIGTERM)
        for proc in processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        logs.close()

    # Tracebacks while everything ran (at shutdown APScheduler may still try to submit a job
    # to an executor Python already shut down: noise, reported separately).
    output = (directory / "processes.log").read_bytes()[:before_shutdown].decode(errors="replace")
    assert "Traceback" not in output, output[-3000:]
    with host.app.app_context():
        m = host.inbox.models
        session = host.db.session
        ids = session.scalars(sa.select(m.Message.message_id)).all()
        assert len(ids) == MESSAGES, (len(ids), output[-2000:])
        assert sorted(ids) == sorted(f"mp-{n}@example.org" for n in range(1, MESSAGES + 1))
        uids = session.scalars(sa.select(m.FetchedUid.uid)).all()
        assert len(uids) == len(set(uids)) == MESSAGES
        assert session.scalar(sa.select(sa.func.sum(m.Ticket.message_count))) == MESSAGES
        session.remove()

    intervals = _intervals(lease_log)
    roles = {role for *_, role, _mb in intervals}
    owners = {owner for _s, _e, owner, _r, _mb in intervals}
    assert {"gunicorn", "run-worker"} <= roles, roles  # both kinds really polled
    assert len({o.split(":")[1] for o in owners}) >= 3, owners  # several processes did
    held_until = 0.0
    for start, end, owner, role, _mailbox in intervals:
        assert start >= held_until, f"{owner} ({role}) took the mailbox while another held it"
        held_until = max(held_until, end)
    print(f"\n{len(intervals)} polls by {len(owners)} pollers in "
          f"{len({o.split(':')[1] for o in owners})} processes; {MESSAGES} messages once each; "
          f"delivered over {delivered_after:.1f} s, all stored {ingest_seconds:.1f} s later")

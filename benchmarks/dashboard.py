"""Dashboard speed: the inbox list, a ticket page and a search on a large database.

Run from the project root::

    python3 benchmarks/dashboard.py                    # 100k tickets / 300k messages
    python3 benchmarks/dashboard.py --tickets 20000 --runs 50
    python3 benchmarks/dashboard.py --db /tmp/dash.db  # keep (and reuse) the seeded file
    python3 benchmarks/dashboard.py --database-url \
        postgresql+psycopg://shared_inbox:shared_inbox@127.0.0.1:5432/si_bench
        # PostgreSQL: an empty database is seeded, one already seeded is reused

It seeds 5 mailboxes, 30k customers, ``--tickets`` tickets with 3 messages each, tags and
assignees with ``executemany`` (FTS triggers included), then times requests through the
Flask test client (server time, no network) as an admin and as an agent of 2 of the 5
mailboxes, and counts SQL statements per page at 10 and at 50 rows.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
for _p in (str(PROJECT_ROOT), str(PROJECT_ROOT / "tests")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import sqlalchemy as sa  # noqa: E402

from hosts import Host  # noqa: E402

FMT = "%Y-%m-%d %H:%M:%S.%f"  # SQLAlchemy's SQLite DateTime storage format
WORDS = ("order delivery refund tent stove pole zipper invoice shipping parcel broken "
         "replace warranty colour size return exchange payment card paypal address "
         "customer thanks please hello regards question problem help urgent late "
         "missing damaged lantern sleeping bag backpack boots jacket rain water "
         "läuft kaputt bitte danke versand rechnung größe farbe").split()
FIRST = "Ada Ben Carla Dora Emil Farah Gus Hana Ivo Jürgen Kai Lena Mona Nils Olga".split()
LAST = "Müller Schmidt Diaz Ruiz Novak Smith Jones Brown Rossi Dubois".split()


def seed(host, n_tickets: int, rng: random.Random) -> dict:
    with host.app.app_context():
        engine = host.db.engine
        postgres = engine.dialect.name == "postgresql"

        def q(statement: str) -> str:
            """The SQLite statement in the driver's dialect: placeholders and booleans."""
            if not postgres:
                return statement.replace("{T}", "1").replace("{F}", "0")
            return statement.replace("?", "%s").replace("{T}", "true").replace("{F}", "false")
        admin = host.add_user("admin@bench.test", role="admin", name="Admin")
        agent = host.add_user("agent@bench.test", name="Agent")
        others = [host.add_user(f"a{i}@bench.test", name=f"Agent {i}") for i in range(4)]
        agents = [admin, agent, *others]
        now = datetime.utcnow()
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            created = now.strftime(FMT)
            cur.executemany(q(
                "INSERT INTO inbox_mailbox (id, name, email_address, from_name, signature, "
                "is_active, imap_host, imap_port, imap_security, imap_username, imap_folder, "
                "after_fetch, move_to_folder, smtp_host, smtp_port, smtp_security, "
                "smtp_username, auth_type, needs_reauth, failure_count, created_at) VALUES "
                "(?, ?, ?, '', '', {T}, '', 993, 'ssl', '', 'INBOX', 'leave', '', '', 587, "
                "'starttls', '', 'password', {F}, 0, ?)"),
                [(i, f"Mailbox {i}", f"box{i}@bench.test", created) for i in range(1, 6)])
            members = [(1, agent), (2, agent)] + [(1 + i % 5, u) for i, u in enumerate(others)]
            cur.executemany(q(
                "INSERT INTO inbox_mailbox_member (mailbox_id, user_id, created_at) "
                "VALUES (?, ?, ?)"), [(mb, u, created) for mb, u in members])
            n_customers = max(10, n_tickets * 3 // 10)
            customers = []
            for i in range(1, n_customers + 1):
                name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
                customers.append((i, f"c{i}@{rng.choice(['mail', 'shop', 'web'])}.example",
                                  name, "", created, created))
            cur.executemany(q("INSERT INTO inbox_customer (id, email, name, notes, created_at, "
                              "updated_at) VALUES (?, ?, ?, ?, ?, ?)"), customers)
            cur.executemany(q("INSERT INTO inbox_tag (id, name, color, created_at) "
                              "VALUES (?, ?, '#6b7280', ?)"),
                            [(i, f"tag{i}", created) for i in range(1, 11)])
            tickets, messages, tags = [], [], []
            msg_id = 0
            statuses = ["open"] * 25 + ["pending"] * 10 + ["closed"] * 60 + ["spam"] * 5
            for tid in range(1, n_tickets + 1):
                cust = rng.choice(customers)
                last = now - timedelta(minutes=rng.randint(0, 2 * 365 * 24 * 60))
                first = last - timedelta(hours=rng.randint(1, 72))
                mailbox = rng.randint(1, 5)
                subject = " ".join(rng.choices(WORDS, k=4)).capitalize()
                inbound_last = rng.random() < 0.5
                out_at = None if inbound_last and rng.random() < 0.5 else (
                    last if not inbound_last else first + timedelta(minutes=30))
                in_at = last if inbound_last else first
                status = rng.choice(statuses)
                assignee = rng.choice(agents + [None, None])
                snoozed = (now + timedelta(days=1)).strftime(FMT) \
                    if status == "open" and rng.random() < 0.03 else None
                body = ""
                for k in range(3):
                    msg_id += 1
                    body = " ".join(rng.choices(WORDS, k=40)) + f" order {rng.randint(1000, 99999)} sku{rng.randint(1, 500000)}"
                    kind = "outbound" if k == 1 else "inbound"
                    at = first + (last - first) * k / 2
                    messages.append((
                        msg_id, tid, mailbox, kind, cust[2] if kind == "inbound" else "Agent",
                        cust[1] if kind == "inbound" else f"box{mailbox}@bench.test",
                        "Re: " + subject if k else subject, body, at.strftime(FMT),
                        at.strftime(FMT)))
                tickets.append((
                    tid, mailbox, cust[0], subject, status, assignee, body[:200],
                    first.strftime(FMT), last.strftime(FMT), in_at.strftime(FMT),
                    out_at.strftime(FMT) if out_at else None, snoozed,
                    last.strftime(FMT) if status == "closed" else None))
                for tag in rng.sample(range(1, 11), rng.choice([0, 0, 1, 2])):
                    tags.append((tid, tag))
            cur.executemany(q(
                "INSERT INTO inbox_ticket (id, mailbox_id, customer_id, subject, status, "
                "priority, assignee_id, snippet, message_count, is_flagged, created_at, "
                "updated_at, last_message_at, last_inbound_at, last_outbound_at, "
                "snoozed_until, closed_at) VALUES (?, ?, ?, ?, ?, 'normal', ?, ?, 3, {F}, ?, ?, "
                "?, ?, ?, ?, ?)"),
                [(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[8], t[9], t[10],
                  t[11], t[12]) for t in tickets])
            cur.executemany(q(
                "INSERT INTO inbox_message (id, ticket_id, mailbox_id, kind, from_name, "
                "from_email, \"to\", cc, subject, in_reply_to, \"references\", headers, "
                "body_text, thread_reason, send_attempts, is_malformed, is_automated, "
                "is_bounce, is_imported, date, created_at) VALUES (?, ?, ?, ?, ?, ?, '[]', "
                "'[]', ?, '', '', '{}', ?, '', 0, {F}, {F}, {F}, {F}, ?, ?)"), messages)
            cur.executemany(q("INSERT INTO inbox_ticket_tag (ticket_id, tag_id) VALUES (?, ?)"),
                            tags)
            if postgres:  # ids were given explicitly: move the sequences past them
                for table in ("mailbox", "customer", "tag", "ticket", "message"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('inbox_{table}', 'id'), "
                                f"(SELECT max(id) FROM inbox_{table}))")
            raw.commit()
            if postgres:
                raw.driver_connection.autocommit = True  # VACUUM: not in a transaction
                cur.execute("VACUUM ANALYZE")
            else:
                cur.execute("ANALYZE")
                raw.commit()
        finally:
            raw.close()
        return {"admin": admin, "agent": agent, "messages": msg_id}


def _is_empty(host) -> bool:
    """No tickets table, or no ticket in it: the database still needs seeding."""
    with host.app.app_context():
        engine = host.db.engine
        if not sa.inspect(engine).has_table("inbox_ticket"):
            return True
        with engine.connect() as conn:
            return not conn.scalar(sa.text("SELECT count(*) FROM inbox_ticket"))


def _without_password(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def timed(client, url: str, runs: int) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU milliseconds of this process per request. On a busy machine the
    wall clock includes waiting for a CPU; the CPU time does not (on SQLite it covers the
    queries too; on PostgreSQL the database server's own CPU is not in it)."""
    times, cpu = [], []
    for _ in range(runs):
        start, start_cpu = time.perf_counter(), time.process_time()
        r = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        cpu.append((time.process_time() - start_cpu) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    return times, cpu


def queries(host, client, url: str) -> int:
    statements = []

    def _count(*args):
        statements.append(args[2])

    with host.app.app_context():
        engine = host.db.engine
    sa.event.listen(engine, "before_cursor_execute", _count)
    try:
        client.get(url)
    finally:
        sa.event.remove(engine, "before_cursor_execute", _count)
    return len(statements)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="SQLite file to use (seeded only if new)")
    parser.add_argument("--database-url", help="SQLAlchemy URL of a database to use instead "
                        "of SQLite, e.g. PostgreSQL (seeded only if it has no tickets yet)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="si-dash-"))
    db_path = Path(args.db) if args.db else tmp / "dash.db"
    url = args.database_url or f"sqlite:///{db_path}"
    where = _without_password(url) if args.database_url else str(db_path)
    host = Host(database_url=url, tmp_path=tmp, config={"SHARED_INBOX_PAGE_SIZE": 50})
    fresh = _is_empty(host) if args.database_url else not db_path.exists()
    if fresh:
        host.create_tables()
        start = time.perf_counter()
        info = seed(host, args.tickets, random.Random(args.seed))
        print(f"seeded {args.tickets} tickets / {info['messages']} messages in "
              f"{time.perf_counter() - start:.1f} s ({where})")
    with host.app.app_context():
        users = {u.role if u.email == "admin@bench.test" else u.email: u.id
                 for u in host.db.session.scalars(sa.select(host.User))}
        ticket_id = host.db.session.scalar(
            sa.select(sa.func.max(host.inbox.models.Ticket.id)).where(
                host.inbox.models.Ticket.mailbox_id == 1))
        n_tickets = host.db.session.scalar(sa.select(sa.func.count(host.inbox.models.Ticket.id)))
    who = {"admin": users["admin"], "agent (2 of 5 mailboxes)": users["agent@bench.test"]}
    pages = [
        ("inbox (All open, newest)", "/support/"),
        ("inbox Closed folder", "/support/?folder=closed"),
        ("inbox waiting longest", "/support/?sort=waiting"),
        ("inbox tag filter", "/support/?tag=3"),
        ("inbox next page", None),
        ("ticket page", f"/support/tickets/{ticket_id}"),
        ("search rare word", "/support/?q=sku4242"),
        ("search 3 frequent words", "/support/?q=lantern+jacket+boots"),
        ("search word in every message", "/support/?q=order"),
        ("search email (closed)", "/support/?folder=closed&q=c42%40mail.example"),
        ("search diacritics", "/support/?q=lauft+grosse"),
    ]
    print(f"\n{n_tickets} tickets; server time per request over {args.runs} runs (ms)")
    print(f"{'page':34} {'user':26} {'median':>8} {'p95':>8} {'cpu med':>8} {'queries@10':>11} "
          f"{'queries@50':>11}")
    for label, user in who.items():
        client = host.app.test_client()
        host.login(client, user)
        first = client.get("/support/").get_data(as_text=True)
        marker = 'class="si-next" rel="next" href="'
        next_url = first.split(marker)[1].split('"')[0].replace("&amp;", "&") \
            if marker in first else "/support/"
        for name, url in pages:
            url = url or next_url
            client.get(url)  # warm caches
            times, cpu = timed(client, url, args.runs)
            times.sort()
            p95 = times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]
            counts = []
            for size in (10, 50):
                host.app.config["SHARED_INBOX_PAGE_SIZE"] = size
                counts.append(queries(host, client, url))
            host.app.config["SHARED_INBOX_PAGE_SIZE"] = 50
            print(f"{name:34} {label:26} {statistics.median(times):8.1f} {p95:8.1f} "
                  f"{statistics.median(cpu):8.1f} {counts[0]:11d} {counts[1]:11d}")
    print(json.dumps({"db": where}))


if __name__ == "__main__":
    main()

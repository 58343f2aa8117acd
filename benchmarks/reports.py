"""Reports speed: the reports page and its CSV exports on a large database.

Run from the project root::

    python3 benchmarks/reports.py                      # 100k tickets over one year, SQLite
    python3 benchmarks/reports.py --tickets 20000 --runs 3
    python3 benchmarks/reports.py --db /tmp/rep.db     # keep (and reuse) the seeded file
    python3 benchmarks/reports.py --hours              # give every mailbox business hours
    python3 benchmarks/reports.py --database-url \
        postgresql+psycopg://shared_inbox:shared_inbox@127.0.0.1:5432/si_bench

It seeds 5 mailboxes, 6 agents, 10 tags and ``--tickets`` tickets spread over the last year
(created, first response, closed, SLA due times), an inbound message and one to three agent
replies each, and ratings on a fifth of the closed ones, with ``executemany``. It then times
``/support/reports`` through the Flask test client (server time, no network) as an admin and
as an agent, for the last 30 days (the page's default) and for the whole year (every ticket),
and the two CSV exports for the year, printing the median of ``--runs`` runs, wall clock and
this process's CPU time (target: the page under 1 s at 100k tickets on SQLite). With
``--database-url`` the CPU column leaves out the database server's work.

The seeded tickets have no stored report durations, as after an upgrade: the first report
over them works every duration out and stores it (``services.reports.store_durations``);
that first request is timed on its own ("first ..." line), the medians are of later ones.
"""
from __future__ import annotations

import argparse
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

FMT = "%Y-%m-%d %H:%M:%S.%f"
OFFICE = '{"0": [["09:00", "17:00"]], "1": [["09:00", "17:00"]], "2": [["09:00", "17:00"]], ' \
    '"3": [["09:00", "17:00"]], "4": [["09:00", "17:00"]]}'


def seed(host, n_tickets: int, rng: random.Random, hours: bool) -> int:
    with host.app.app_context():
        engine = host.db.engine
        postgres = engine.dialect.name == "postgresql"

        def q(statement: str) -> str:
            if not postgres:
                return statement.replace("{T}", "1").replace("{F}", "0")
            return statement.replace("?", "%s").replace("{T}", "true").replace("{F}", "false")

        admin = host.add_user("admin@bench.test", role="admin", name="Admin")
        agent = host.add_user("agent@bench.test", name="Agent")
        agents = [admin, agent] + [host.add_user(f"a{i}@bench.test", name=f"Agent {i}")
                                   for i in range(4)]
        now = datetime.utcnow()
        created = now.strftime(FMT)
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.executemany(q(
                "INSERT INTO inbox_mailbox (id, name, email_address, from_name, signature, "
                "is_active, imap_host, imap_port, imap_security, imap_username, imap_folder, "
                "after_fetch, move_to_folder, smtp_host, smtp_port, smtp_security, "
                "smtp_username, auth_type, needs_reauth, failure_count, created_at, timezone, "
                "business_hours) VALUES (?, ?, ?, '', '', {T}, '', 993, 'ssl', '', 'INBOX', "
                "'leave', '', '', 587, 'starttls', '', 'password', {F}, 0, ?, 'Europe/Berlin', ?)"),
                [(i, f"Mailbox {i}", f"box{i}@bench.test", created, OFFICE if hours else None)
                 for i in range(1, 6)])
            cur.executemany(q("INSERT INTO inbox_mailbox_member (mailbox_id, user_id, "
                              "created_at) VALUES (?, ?, ?)"),
                            [(1, agent, created), (2, agent, created)])
            cur.execute(q("INSERT INTO inbox_customer (id, email, name, notes, created_at, "
                          "updated_at) VALUES (1, 'c@bench.test', 'C', '', ?, ?)"),
                        (created, created))
            cur.executemany(q("INSERT INTO inbox_tag (id, name, color, created_at) "
                              "VALUES (?, ?, '#6b7280', ?)"),
                            [(i, f"tag{i}", created) for i in range(1, 11)])
            tickets, messages, tags, ratings = [], [], [], []
            msg_id = 0
            for tid in range(1, n_tickets + 1):
                start = now - timedelta(minutes=rng.randint(0, 365 * 24 * 60))
                mailbox = rng.randint(1, 5)
                assignee = rng.choice(agents + [None])
                answered = rng.random() < 0.9
                first = start + timedelta(minutes=rng.randint(5, 3000)) if answered else None
                closed = (first + timedelta(minutes=rng.randint(5, 5000))
                          if first and rng.random() < 0.75 else None)
                if closed and closed > now:
                    closed = None
                status = "closed" if closed else rng.choice(["open", "pending", "open"])
                waiting = status == "open" and not answered
                fr_due = start + timedelta(hours=8)
                res_due = start + timedelta(days=3)
                msg_id += 1
                messages.append((msg_id, tid, mailbox, "inbound", None, start.strftime(FMT)))
                if first:
                    for k in range(rng.choice([1, 1, 2, 3])):
                        msg_id += 1
                        at = first + timedelta(minutes=30 * k)
                        messages.append((msg_id, tid, mailbox, "outbound",
                                         assignee or admin, at.strftime(FMT)))
                tickets.append((
                    tid, mailbox, status, assignee, start.strftime(FMT),
                    (first or start).strftime(FMT), start.strftime(FMT),
                    first.strftime(FMT) if first and not waiting else None,
                    first.strftime(FMT) if first else None,
                    closed.strftime(FMT) if closed else None,
                    fr_due.strftime(FMT), res_due.strftime(FMT)))
                for tag in rng.sample(range(1, 11), rng.choice([0, 0, 1, 2])):
                    tags.append((tid, tag))
                if closed and rng.random() < 0.2:
                    at = (closed + timedelta(hours=2)).strftime(FMT)
                    ratings.append((tid, rng.choice(["great", "great", "okay", "bad"]), at, at))
            cur.executemany(q(
                "INSERT INTO inbox_ticket (id, mailbox_id, customer_id, subject, status, "
                "priority, assignee_id, snippet, message_count, is_flagged, created_at, "
                "updated_at, last_message_at, last_inbound_at, last_outbound_at, "
                "first_response_at, closed_at, first_response_due_at, resolution_due_at) "
                "VALUES (?, ?, 1, 'Subject', ?, 'normal', ?, '', 2, {F}, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)"),
                [(t[0], t[1], t[2], t[3], t[4], t[5], t[5], t[6], t[7], t[8], t[9], t[10], t[11])
                 for t in tickets])
            cur.executemany(q(
                "INSERT INTO inbox_message (id, ticket_id, mailbox_id, kind, author_id, "
                "from_name, from_email, \"to\", cc, subject, in_reply_to, \"references\", "
                "headers, body_text, thread_reason, send_attempts, is_malformed, is_automated, "
                "is_bounce, is_imported, date, created_at) VALUES (?, ?, ?, ?, ?, '', '', '[]', "
                "'[]', 'Subject', '', '', '{}', 'text', 'reply by an agent', 0, {F}, {F}, {F}, "
                "{F}, ?, ?)"), [m + (m[5],) for m in messages])
            cur.executemany(q("INSERT INTO inbox_ticket_tag (ticket_id, tag_id) VALUES (?, ?)"),
                            tags)
            cur.executemany(q("INSERT INTO inbox_satisfaction_rating (ticket_id, rating, "
                              "comment, created_at, updated_at) VALUES (?, ?, '', ?, ?)"),
                            ratings)
            if postgres:
                for table in ("mailbox", "customer", "tag", "ticket", "message",
                              "satisfaction_rating"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('inbox_{table}', 'id'), "
                                f"(SELECT max(id) FROM inbox_{table}))")
            raw.commit()
            if postgres:
                raw.driver_connection.autocommit = True
                cur.execute("VACUUM ANALYZE")
                raw.driver_connection.autocommit = False  # back to the pool as it came
            else:
                cur.execute("ANALYZE")
                raw.commit()
        finally:
            raw.close()
        return msg_id


def timed(client, url: str, runs: int) -> tuple[float, float]:
    """(median wall ms, median CPU ms of this process). The test client runs the request and
    SQLite in this process, so on a busy machine the CPU time is the steadier figure."""
    walls, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), time.process_time()
        r = client.get(url)
        r.get_data()  # a streamed export is produced while it is read
        walls.append((time.perf_counter() - start) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        assert r.status_code == 200, (url, r.status_code)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hours", action="store_true",
                        help="business hours on every mailbox (Mon-Fri 09-17 Europe/Berlin)")
    parser.add_argument("--db", help="SQLite file to use (seeded only if new)")
    parser.add_argument("--database-url", help="SQLAlchemy URL of an empty database to use")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="si-rep-"))
    db_path = Path(args.db) if args.db else tmp / "rep.db"
    url = args.database_url or f"sqlite:///{db_path}"
    host = Host(database_url=url, tmp_path=tmp)
    if args.database_url or not db_path.exists():
        host.create_tables()
        start = time.perf_counter()
        n_messages = seed(host, args.tickets, random.Random(args.seed), args.hours)
        print(f"seeded {args.tickets} tickets / {n_messages} messages in "
              f"{time.perf_counter() - start:.1f} s")
    with host.app.app_context():
        users = {u.email: u.id for u in host.db.session.scalars(sa.select(host.User))}
        n = host.db.session.scalar(sa.select(sa.func.count(host.inbox.models.Ticket.id)))
    today = datetime.utcnow().date()
    year = f"start={(today - timedelta(days=365)).isoformat()}&end={today.isoformat()}"
    pages = [("reports, last 30 days", "/support/reports"),
             ("reports, one year", f"/support/reports?{year}"),
             ("figures CSV, one year", f"/support/reports/figures.csv?{year}"),
             ("tickets CSV, one year", f"/support/reports/tickets.csv?{year}")]
    print(f"\n{n} tickets ({host.db.engine.dialect.name if False else url.split(':')[0]}"
          f"{', business hours' if args.hours else ''}); median server time of "
          f"{args.runs} runs (ms): wall, CPU of this process")
    with host.app.app_context():
        T = host.inbox.models.Ticket
        unstored = host.db.session.scalar(sa.select(sa.func.count(T.id)).where(
            T.report_basis.is_(None)))
    for who in ("admin@bench.test", "agent@bench.test"):
        client = host.app.test_client()
        host.login(client, users[who])
        if unstored and who == "admin@bench.test":  # durations not stored yet
            wall, cpu = timed(client, pages[1][1], 1)
            print(f"{'first ' + pages[1][0]:26} {who:18} {wall:9.1f} {cpu:9.1f}  "
                  f"({unstored} tickets without stored durations)", flush=True)
        for label, page in pages:
            client.get(page).get_data()  # warm-up
            wall, cpu = timed(client, page, args.runs)
            print(f"{label:26} {who:18} {wall:9.1f} {cpu:9.1f}", flush=True)


if __name__ == "__main__":
    main()

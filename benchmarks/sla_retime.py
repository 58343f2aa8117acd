"""What saving an SLA policy (or business hours) costs with a large open backlog.

Run from the project root::

    python3 benchmarks/sla_retime.py                   # 20,000 open tickets, SQLite
    python3 benchmarks/sla_retime.py --tickets 50000 --runs 3
    python3 benchmarks/sla_retime.py --database-url \\
        postgresql+psycopg://shared_inbox:shared_inbox@127.0.0.1:5432/si_bench

Seeds ``--tickets`` open or pending tickets in a mailbox with Berlin office hours, each with
a customer message, 60 % with an agent reply, a third of those with a later customer
message, one in ten reopened, under one SLA policy. Then it changes the policy's targets
and times ``services.sla.reapply_policies()`` plus the commit (what the settings request
does), printing the median wall and CPU seconds of ``--runs`` runs.
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

OFFICE = {str(d): [["09:00", "17:00"]] for d in range(5)}


def seed(host, n: int, rng: random.Random) -> None:
    with host.app.app_context():
        m = host.inbox.models
        db = host.db
        agent = host.add_user("agent@bench.test", name="Agent")
        mailbox = m.Mailbox(name="Support", email_address="support@bench.test",
                            timezone="Europe/Berlin", business_hours=OFFICE)
        customer = m.Customer(email="c@bench.test", name="C")
        db.session.add_all([mailbox, customer,
                            m.SlaPolicy(name="Standard", position=1,
                                        first_response_minutes=120, resolution_minutes=480)])
        db.session.commit()
        now = datetime.utcnow()
        tickets, messages, activities = [], [], []
        for tid in range(1, n + 1):
            start = now - timedelta(minutes=rng.randint(0, 30 * 24 * 60))
            tickets.append(dict(id=tid, mailbox_id=mailbox.id, customer_id=customer.id,
                                subject=f"Ticket {tid}", status=rng.choice(["open", "pending"]),
                                created_at=start, updated_at=start, last_message_at=start,
                                last_inbound_at=start, message_count=1))
            messages.append(dict(ticket_id=tid, mailbox_id=mailbox.id, kind="inbound",
                                 body_text="Hello", created_at=start))
            if rng.random() < 0.6:
                replied = start + timedelta(minutes=rng.randint(5, 600))
                messages.append(dict(ticket_id=tid, mailbox_id=mailbox.id, kind="outbound",
                                     author_id=agent, body_text="On it", created_at=replied))
                if rng.random() < 0.33:
                    messages.append(dict(ticket_id=tid, mailbox_id=mailbox.id, kind="inbound",
                                         body_text="Again",
                                         created_at=replied + timedelta(minutes=30)))
            if rng.random() < 0.1:
                activities.append(dict(ticket_id=tid, action="reopened", detail={},
                                       created_at=start + timedelta(hours=20)))
        db.session.execute(sa.insert(m.Ticket.__table__), tickets)
        db.session.execute(sa.insert(m.Message.__table__), messages)
        db.session.execute(sa.insert(m.Activity.__table__), activities)
        db.session.commit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--database-url", help="SQLAlchemy URL of an empty database")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="si-retime-"))
    url = args.database_url or f"sqlite:///{tmp / 'retime.db'}"
    host = Host(database_url=url, tmp_path=tmp)
    host.create_tables()
    started = time.perf_counter()
    seed(host, args.tickets, random.Random(1))
    print(f"seeded {args.tickets} open/pending tickets in {time.perf_counter() - started:.1f} s "
          f"({url.split(':', 1)[0]})")
    from shared_inbox.services.sla import reapply_policies

    walls, cpus, changed = [], [], 0
    for run in range(args.runs):
        with host.app.app_context():
            m = host.inbox.models
            policy = host.db.session.scalar(sa.select(m.SlaPolicy))
            policy.first_response_minutes = 60 if run % 2 == 0 else 120  # a real change
            wall, cpu = time.perf_counter(), time.process_time()
            changed = reapply_policies()
            host.db.session.commit()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            host.db.session.remove()
    print(f"reapply_policies + commit: {statistics.median(walls):.2f} s wall, "
          f"{statistics.median(cpus):.2f} s CPU (median of {args.runs}); {changed} tickets "
          f"re-timed in the last run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What automation costs per customer message: rules, auto-replies, SLA, customer context.

Run from the project root::

    python3 benchmarks/automation.py                 # 300 messages per configuration
    python3 benchmarks/automation.py --count 1000 --rules 50

Each configuration gets a fresh SQLite file database behind the example shop
(``examples/shop``, its real ``orders`` customer-context provider and seeded orders). The
messages are ingested first (not timed); then ``services.automation.process_pending`` runs
over all of them and its wall time per message is printed, for:

  - ``none``: no rule, no auto-reply, no SLA policy (the fixed cost: claim, signals, commit);
  - ``rules``: ``--rules`` active rules (subject/body contains, a regular expression, from
    domain, has attachment), every fifth matching and adding a tag;
  - ``rules+context``: the same plus one rule on ``orders.count`` (calls the shop's provider,
    cached per customer for ``SHARED_INBOX_CUSTOMER_CONTEXT_CACHE_SECONDS``);
  - ``all``: rules+context, an acknowledgement per new ticket (queued, not sent) and an SLA
    policy in Berlin business hours.

Also printed: how long saving an SLA policy takes to re-time the open tickets
(``sla.reapply_policies``), and the customer-context panel uncached and cached.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

CUSTOMERS = ["jose@example.org", "zoe@example.org", "alice@example.org", "taro@example.jp",
             "bob@example.org", "new1@example.net", "new2@example.net", "vip@bigcorp.example"]
SUBJECTS = ["Where is my order #10{:02d}?", "Refund for the stove", "Tent pole broke",
            "Invoice question", "Do you ship to Canada?", "Order 55{:02d} arrived damaged"]
NOW = datetime(2026, 11, 23, 10, 0)  # a Monday, 11:00 in Berlin
RETIME: list = []  # (open tickets, changed, seconds) of sla.reapply_policies


def raw_mail(n: int) -> bytes:
    msg = EmailMessage()
    sender = CUSTOMERS[n % len(CUSTOMERS)]
    msg["From"] = f"Customer {n % len(CUSTOMERS)} <{sender}>"
    msg["To"] = "support@acme.test"
    msg["Subject"] = SUBJECTS[n % len(SUBJECTS)].format(n % 100)
    msg["Message-ID"] = f"<bench-{n}@example.org>"
    msg.set_content(f"Hello,\n\nmessage {n}: the parcel is {'broken' if n % 3 else 'late'}.\n"
                    "Kind regards\n" * 3)
    if n % 7 == 0:
        msg.add_attachment(b"%PDF-1.4 receipt", maintype="application", subtype="pdf",
                           filename="receipt.pdf")
    return bytes(msg)


def text_rules(count: int) -> list[dict]:
    kinds = [
        lambda i: {"field": "subject", "op": "contains", "value": f"word{i}"},
        lambda i: {"field": "body", "op": "contains", "value": f"phrase {i}"},
        lambda i: {"field": "subject", "op": "matches", "value": rf"order\s*#?{i}\d\d"},
        lambda i: {"field": "from", "op": "domain_is", "value": f"corp{i}.example"},
        lambda i: {"field": "has_attachment", "op": "is_true"},
    ]
    rules = []
    for i in range(count):
        cond = kinds[i % len(kinds)](i)
        if i % 5 == 0:  # every fifth one matches most mail
            cond = {"field": "body", "op": "contains", "value": "parcel"}
        rules.append({"name": f"rule {i}", "conditions": [cond],
                      "actions": [{"type": "add_tag", "tag": f"t{i % 10}"}]})
    return rules


def build(tmp: Path, name: str):
    from examples.shop import create_app, inbox
    from examples.shop.models import db
    from examples.shop.seed import seed_accounts_and_orders

    app = create_app({"TESTING": True,
                      "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / (name + '.db')}",
                      "SHARED_INBOX_ATTACHMENT_DIR": str(tmp / f"files-{name}"),
                      "SHARED_INBOX_AUTOREPLY_SENDER_LIMIT": 100000,
                      "SHARED_INBOX_AUTOREPLY_MAILBOX_LIMIT": 100000})
    with app.app_context():
        seed_accounts_and_orders()
        inbox.create_all()
        db.session.add(inbox.models.Mailbox(
            name="Support", email_address="support@acme.test", timezone="Europe/Berlin",
            business_hours={str(d): [["09:00", "17:00"]] for d in range(5)}))
        db.session.commit()
    return app, inbox, db


def run(config: str, count: int, rule_count: int, tmp: Path) -> float:
    from shared_inbox.services.automation import process_pending
    from shared_inbox.services.context import clear_cache
    from shared_inbox.services.ingest import ingest
    from shared_inbox.services.rules import next_position

    app, inbox, db = build(tmp, config)
    with app.app_context():
        m = inbox.models
        mailbox = db.session.scalar(db.select(m.Mailbox))
        rules = text_rules(rule_count) if config != "none" else []
        if config in ("rules+context", "all"):
            rules.append({"name": "repeat buyer", "conditions": [
                {"field": "customer", "key": "orders.count", "op": "greater", "value": "2"}],
                "actions": [{"type": "add_tag", "tag": "repeat"}]})
        for rule in rules:
            db.session.add(m.Rule(name=rule["name"], trigger="both", match="all",
                                  conditions=rule["conditions"], actions=rule["actions"],
                                  is_active=True, position=next_position()))
            db.session.flush()
        if config == "all":
            mailbox.autoreply_ack_enabled = True
            db.session.add(m.SlaPolicy(name="Standard", position=1, first_response_minutes=120,
                                       resolution_minutes=480))
        db.session.commit()
        for n in range(count):
            ingest(mailbox, raw_mail(n))
        clear_cache()
        started = time.perf_counter()
        done = 0
        while True:
            events = process_pending(limit=500, now=NOW)
            if not events:
                break
            done += len(events)
        elapsed = time.perf_counter() - started
        assert done == count, (done, count)
        failed = db.session.scalar(db.select(db.func.count()).where(
            m.Message.automation_state == "failed"))
        assert not failed, f"{failed} messages failed automation"
        if config == "all":  # what saving an SLA policy or business hours costs
            from shared_inbox.services.sla import reapply_policies

            policy = db.session.scalar(db.select(m.SlaPolicy))
            policy.first_response_minutes = 60
            open_tickets = db.session.scalar(db.select(db.func.count(m.Ticket.id)).where(
                m.Ticket.status.in_(("open", "pending"))))
            started = time.perf_counter()
            changed = reapply_policies()
            db.session.commit()
            RETIME.append((open_tickets, changed, time.perf_counter() - started))
        db.session.remove()
        db.engine.dispose()
    return elapsed


def panel_timing(tmp: Path) -> tuple[float, float]:
    from shared_inbox.services.context import clear_cache, panels

    app, inbox, db = build(tmp, "panel")
    with app.app_context(), app.test_request_context("/support/"):
        customer = inbox.models.Customer(email="jose@example.org", name="José")
        db.session.add(customer)
        db.session.commit()
        clear_cache()
        started = time.perf_counter()
        assert panels(customer)[0].html
        uncached = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(100):
            panels(customer)
        cached = (time.perf_counter() - started) / 100
        db.session.remove()
        db.engine.dispose()
    return uncached, cached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="messages per configuration")
    parser.add_argument("--rules", type=int, default=20, help="text rules in 'rules' and after")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="si-bench-automation-") as tmp:
        tmp = Path(tmp)
        print(f"{args.count} messages, {args.rules} rules, SQLite file database")
        base = None
        for config in ("none", "rules", "rules+context", "all"):
            seconds = run(config, args.count, args.rules, tmp)
            per = seconds / args.count * 1000
            base = per if base is None else base
            extra = "" if config == "none" else f"  (+{per - base:.2f} ms over none)"
            print(f"  {config:<14} {per:7.2f} ms/message  {args.count / seconds:7.1f} msg/s{extra}")
        for open_tickets, changed, seconds in RETIME:
            print(f"  SLA policy edit re-times {changed} of {open_tickets} open tickets in "
                  f"{seconds * 1000:.0f} ms")
        uncached, cached = panel_timing(tmp)
        print(f"  orders panel   {uncached * 1000:7.2f} ms uncached, {cached * 1000:.3f} ms cached")


if __name__ == "__main__":
    main()

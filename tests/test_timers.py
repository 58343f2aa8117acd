"""Timers: SLA breach mail (once per ticket and target), auto-close of pending tickets, and
snoozed tickets waking; all driven by the database, with ``now=`` instead of a real clock."""
from datetime import datetime, timedelta
from email import message_from_bytes, policy as email_policy

import sqlalchemy as sa

from shared_inbox.models import utcnow
from shared_inbox.scheduler import make_scheduler, timers_job
from shared_inbox.services.outbox import deliver_due
from shared_inbox.services.replies import queue_reply
from shared_inbox.services.tickets import snooze, wake_snoozed
from shared_inbox.services.timers import auto_close, run_timers
from test_poll import mail
import test_sla
from test_sla import FRIDAY_1630, receive

FR_DUE = datetime(2026, 11, 23, 9, 30)   # first response, Monday 10:30 Berlin
RES_DUE = datetime(2026, 11, 23, 15, 30)  # resolution, Monday 16:30 Berlin
shop = test_sla.shop  # the fixture: support@ in Berlin hours, a 2h / 8h policy, Ada


def _actions(host, tid):
    with host.app.app_context():
        m = host.inbox.models
        return host.db.session.scalars(sa.select(m.Activity.action).where(
            m.Activity.ticket_id == tid).order_by(m.Activity.id)).all()


def _timers(host, now):
    with host.app.app_context():
        result = run_timers(now)
        host.db.session.commit()
        return result


def test_a_breach_mails_the_assignee_once_per_target(host, shop, mail_server):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Ticket, tid).assignee_id = ada
        host.db.session.commit()
    assert _timers(host, FR_DUE - timedelta(minutes=1)).breaches == []
    assert _timers(host, FR_DUE).breaches == [(tid, "first_response")]
    assert _timers(host, FR_DUE + timedelta(minutes=5)).breaches == []  # told once only
    with host.app.app_context():
        assert deliver_due(force=True).sent == 1
    sent = mail_server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["ada@acme.test"]
    msg = message_from_bytes(sent.data, policy=email_policy.default)
    assert msg["Subject"] == f"[#{tid}] SLA breached (first response): Broken kettle"
    body = msg.get_content()
    assert "due 2026-11-23 09:30 UTC" in body and "Assignee: Ada" in body
    # The resolution target is a second, separate breach.
    assert _timers(host, RES_DUE).breaches == [(tid, "resolution")]
    assert _timers(host, RES_DUE + timedelta(hours=1)).breaches == []
    assert _actions(host, tid).count("sla_breached") == 2
    with host.app.app_context():
        m = host.inbox.models
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(m.Notification)
                                      .where(m.Notification.reason == "sla_breach")) == 2


def test_an_unassigned_breach_mails_the_admins(host, shop, mail_server):
    box, _ = shop
    host.app.config["SHARED_INBOX_ADMIN_EMAILS"] = ["boss@acme.test", "owner@acme.test"]
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    assert _timers(host, FR_DUE).breaches == [(tid, "first_response")]
    with host.app.app_context():
        assert deliver_due(force=True).sent == 1
    assert sorted(mail_server.wait_for_sent(1)[0].rcpt_tos) == ["boss@acme.test",
                                                                 "owner@acme.test"]


def test_met_targets_never_breach(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "Fixed.", close=True)
        host.db.session.commit()
    assert _timers(host, RES_DUE + timedelta(days=3)).breaches == []
    assert "sla_breached" not in _actions(host, tid)


def test_an_answered_ticket_breaches_only_its_resolution(host, shop):
    box, ada = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "Looking into it.")
        host.db.session.commit()
    assert _timers(host, FR_DUE + timedelta(hours=1)).breaches == []
    assert _timers(host, RES_DUE).breaches == [(tid, "resolution")]


def _pending_ticket(host, box, ada, subject, msgid, sender):
    tid = receive(host, box, mail(subject, msgid=msgid, sender=sender), FRIDAY_1630)
    with host.app.app_context():
        t = host.db.session.get(host.inbox.models.Ticket, tid)
        queue_reply(t, host.db.session.get(host.User, ada), "Does it work now?")
        host.db.session.commit()
        return tid, t.last_message_at


def test_auto_close_with_a_closing_message(host, shop, mail_server):
    box, ada = shop
    with host.app.app_context():
        mb = host.db.session.get(host.inbox.models.Mailbox, box)
        mb.auto_close_days = 7
        mb.auto_close_message = "We closed this as we did not hear back. Just reply to reopen."
        host.db.session.commit()
    old, replied_at = _pending_ticket(host, box, ada, "Kettle", "k1", "alice@example.org")
    with host.app.app_context():
        assert deliver_due(force=True).sent == 1  # the agent's reply
        mail_server.wait_for_sent(1)
        mail_server.sent.clear()
        assert auto_close(replied_at + timedelta(days=7) - timedelta(minutes=1)) == []
        assert auto_close(replied_at + timedelta(days=7)) == [old]
        host.db.session.commit()
        t = host.db.session.get(host.inbox.models.Ticket, old)
        assert t.status == "closed"
        assert auto_close(replied_at + timedelta(days=30)) == []  # closed once
        assert deliver_due(force=True).sent == 1
    assert _actions(host, old)[-1] == "auto_closed"
    sent = mail_server.wait_for_sent(1)[0]
    assert sent.rcpt_tos == ["alice@example.org"]
    msg = message_from_bytes(sent.data, policy=email_policy.default)
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["In-Reply-To"] == "<k1@example.org>"
    assert "did not hear back" in msg.get_body(("plain",)).get_content()


def test_auto_close_without_a_message_and_only_where_enabled(host, shop, mail_server):
    box, ada = shop
    with host.app.app_context():
        m = host.inbox.models
        host.db.session.get(m.Mailbox, box).auto_close_days = 3
        other = m.Mailbox(name="Sales", email_address="sales@example.com")  # no auto-close
        host.db.session.add(other)
        host.db.session.commit()
        other_id = other.id
    pending, replied_at = _pending_ticket(host, box, ada, "Kettle", "k1", "alice@example.org")
    still_open = receive(host, box, mail("Toaster", msgid="t1", sender="tom@example.org"),
                         FRIDAY_1630)
    with host.app.app_context():
        m = host.inbox.models
        moved = host.db.session.get(m.Ticket, pending)
        elsewhere = m.Ticket(mailbox_id=other_id, subject="Elsewhere", status="pending",
                             last_message_at=replied_at)
        host.db.session.add(elsewhere)
        host.db.session.commit()
        assert auto_close(replied_at + timedelta(days=10)) == [moved.id]
        host.db.session.commit()
        assert host.db.session.get(m.Ticket, still_open).status == "open"
        assert host.db.session.get(m.Ticket, elsewhere.id).status == "pending"
        assert host.db.session.scalar(sa.select(sa.func.count()).select_from(m.Message).where(
            m.Message.ticket_id == pending, m.Message.kind == "outbound")) == 1  # our reply only
        assert moved.status == "closed"


def test_snoozed_tickets_wake_from_the_database_after_a_restart(host, shop):
    box, _ = shop
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), FRIDAY_1630)
    until = utcnow() + timedelta(hours=2)
    with host.app.app_context():
        snooze(host.db.session.get(host.inbox.models.Ticket, tid), until)
        host.db.session.commit()
        host.db.session.remove()  # nothing kept in memory: what a restart leaves
        host.db.engine.dispose()
    with host.app.app_context():
        assert wake_snoozed(until - timedelta(seconds=1)) == []
        assert wake_snoozed(until) == [tid]
        host.db.session.commit()
        assert host.db.session.get(host.inbox.models.Ticket, tid).snoozed_until is None
    assert "woke" in _actions(host, tid)


def test_the_worker_runs_the_timers_job(host, shop):
    scheduler = make_scheduler(host.app)
    assert {"timers", "wake"} <= {job.id for job in scheduler.get_jobs()}
    box, _ = shop
    # A ticket whose first response was due an hour ago, by the real clock.
    tid = receive(host, box, mail("Broken kettle", msgid="k1"), utcnow() - timedelta(days=7))
    timers_job(host.app)  # commits on its own
    assert "sla_breached" in _actions(host, tid)

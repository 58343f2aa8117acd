"""Background polling with APScheduler 3.

``flask inbox run-worker`` runs the polling jobs in a process of their own (the production
mode); ``SHARED_INBOX_SCHEDULER = True`` opts in to a BackgroundScheduler in the web process,
started at its first request. Running several at once is safe: each mailbox is polled
under a lease, and ingestion is idempotent.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from .config import cv
from .extension import get_state

log = logging.getLogger("shared_inbox.scheduler")


@contextmanager
def _guarded(app: Flask, failure: str):
    """A background job's frame: an app context, its error logged (the job runs again at its
    next interval) and the session given back, rolled back if it was not committed."""
    with app.app_context():
        try:
            yield
        except Exception:
            log.exception(failure)
        finally:
            get_state(app).db.session.remove()


def poll_job(app: Flask) -> None:
    from .mail.imap import poll_all

    with _guarded(app, "polling failed"):
        for result in poll_all():
            if result.ingested:
                log.info("%s: %d new message(s)", result.mailbox, result.ingested)


def wake_job(app: Flask) -> None:
    """Snoozed tickets come back to the inbox at their time."""
    from .services.tickets import wake_snoozed

    with _guarded(app, "waking snoozed tickets failed"):
        if wake_snoozed():
            get_state(app).db.session.commit()


def automation_job(app: Flask) -> None:
    """Bodies still to parse, then rules, auto-replies and SLA for mail not yet automated
    (e.g. after a crash)."""
    from .services.automation import process_pending
    from .services.complete import complete_pending

    with _guarded(app, "parsing accepted mail failed"):
        complete_pending()
    with _guarded(app, "automation job failed"):
        process_pending()


def webhook_job(app: Flask) -> None:
    """POST due outgoing webhook deliveries (services.webhooks: claims, retries)."""
    from .services.webhooks import deliver_due

    with _guarded(app, "webhook delivery failed"):
        stats = deliver_due()
        if stats.delivered or stats.retry or stats.failed:
            log.info("webhooks: %d delivered, %d to retry, %d failed",
                     stats.delivered, stats.retry, stats.failed)


def weekly_summary_job(app: Flask) -> None:
    """Last week's figures to the admins; the DB records the week, so once per week."""
    from .services.reports import send_weekly_summary

    with _guarded(app, "weekly summary failed"):
        if cv("WEEKLY_SUMMARY", app) and send_weekly_summary(report_url=_report_url(app)):
            log.info("weekly summary queued")


def _report_url(app: Flask) -> str:
    from flask import url_for

    try:
        return url_for(f"{get_state(app).blueprint_name}.reports", _external=True)
    except Exception:  # no SERVER_NAME: the mail goes without the link
        return ""


def timers_job(app: Flask) -> None:
    """SLA breach mail and auto-close of pending tickets (services/timers.py)."""
    from .services.timers import run_timers

    with _guarded(app, "timers job failed"):
        run_timers()
        get_state(app).db.session.commit()


def storage_sweep_job(app: Flask) -> None:
    """Temporary files a killed process left in attachment storage (a day old or more)."""
    with _guarded(app, "sweeping attachment storage failed"):
        sweep = getattr(get_state(app).storage, "sweep", None)
        if sweep is not None:
            removed = sweep()
            if removed:
                log.info("storage: removed %d temporary files left by interrupted writes",
                         removed)


def make_scheduler(app: Flask, *, blocking: bool = False):
    scheduler = (BlockingScheduler if blocking else BackgroundScheduler)(timezone="UTC")
    scheduler.add_job(
        poll_job, "interval", seconds=cv("POLL_INTERVAL", app), args=[app], id="poll",
        max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone(),
    )
    scheduler.add_job(
        send_job, "interval", seconds=cv("SEND_INTERVAL", app), args=[app], id="send",
        max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone(),
    )
    scheduler.add_job(wake_job, "interval", seconds=60, args=[app], id="wake",
                      max_instances=1, coalesce=True)
    scheduler.add_job(webhook_job, "interval", seconds=cv("WEBHOOK_INTERVAL", app), args=[app],
                      id="webhooks", max_instances=1, coalesce=True)
    scheduler.add_job(automation_job, "interval", seconds=cv("AUTOMATION_INTERVAL", app),
                      args=[app], id="automation", max_instances=1, coalesce=True)
    scheduler.add_job(timers_job, "interval", seconds=cv("TIMERS_INTERVAL", app),
                      args=[app], id="timers", max_instances=1, coalesce=True)
    scheduler.add_job(weekly_summary_job, "interval", hours=1, args=[app], id="weekly_summary",
                      max_instances=1, coalesce=True)
    scheduler.add_job(storage_sweep_job, "interval", hours=6, args=[app], id="storage_sweep",
                      max_instances=1, coalesce=True)
    return scheduler


def send_job(app: Flask) -> None:
    """Deliver due outbox messages (replies, forwards, mention notifications)."""
    from .services.outbox import deliver_due

    with _guarded(app, "outbox delivery failed"):
        stats = deliver_due()
        if stats.sent or stats.retry or stats.failed:
            log.info("outbox: %d sent, %d to retry, %d failed",
                     stats.sent, stats.retry, stats.failed)


def start_in_background(app: Flask):
    """Start the app's background scheduler once; returns it."""
    state = get_state(app)
    with state.scheduler_lock:
        if state.scheduler is None:
            state.scheduler = make_scheduler(app)
            state.scheduler.start()
            log.info("shared_inbox: polling every %ss in the background", cv("POLL_INTERVAL", app))
    return state.scheduler


def stop(app: Flask) -> None:
    state = get_state(app)
    with state.scheduler_lock:
        if state.scheduler is not None:
            state.scheduler.shutdown(wait=True)
            state.scheduler = None


def start_on_first_request(app: Flask) -> None:
    """Lazily start polling when the web app serves its first request (never in tests)."""

    @app.before_request
    def _shared_inbox_start_scheduler():
        if app.testing:
            return
        if get_state(app).scheduler is None:
            start_in_background(app)

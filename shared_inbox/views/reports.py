"""Dashboard pages: reports (figures, charts, CSV exports).

Admins see every mailbox and agent; an agent who is not an admin sees only their own
figures (their tickets and their replies) in the mailboxes they belong to.
"""
from __future__ import annotations

from datetime import date, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import Response, render_template, request, stream_with_context
from flask_login import current_user

from ..access import is_admin, user_id, visible_mailbox_ids
from ..models import utcnow
from ..services import charts
from ..services.reports import (
    RATING_LABELS, ReportError, check_range, compute_report, default_timezone, figures_csv,
    format_duration, format_percent, iter_tickets_csv, store_durations, valid_zone,
)

DEFAULT_DAYS = 30


def _parse_date(value: str, label: str, errors: dict, name: str):
    try:
        return date.fromisoformat((value or "").strip())
    except ValueError:
        errors[name] = f"{label}: enter a date as YYYY-MM-DD."
        return None


def read_range():
    """(form values, errors, start, end, mailbox_id, zone) from the query string.

    The time zone defaults to the one the mailboxes in view share (else UTC), so a shop in
    Berlin sees Berlin days and hours without choosing anything."""
    form = {"start": request.args.get("start", ""), "end": request.args.get("end", ""),
            "mailbox": request.args.get("mailbox", ""), "tz": request.args.get("tz", "").strip()}
    errors: dict[str, str] = {}
    mailbox_id = None
    if form["mailbox"]:
        try:
            mailbox_id = int(form["mailbox"])
        except ValueError:
            errors["mailbox"] = "Choose a mailbox from the list."
    zone = None
    if form["tz"]:
        try:
            zone = valid_zone(form["tz"])
        except ReportError as exc:
            errors["tz"] = str(exc)
    else:
        ids = _scope(mailbox_id)[0] if "mailbox" not in errors else None
        zone = form["tz"] = default_timezone(ids)
    if zone:
        today = utcnow().replace(tzinfo=timezone.utc).astimezone(ZoneInfo(zone)).date()
    else:
        today = utcnow().date()
    form["start"] = form["start"] or (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
    form["end"] = form["end"] or today.isoformat()
    start = _parse_date(form["start"], "Start", errors, "start")
    end = _parse_date(form["end"], "End", errors, "end")
    if start and end:
        try:
            check_range(start, end)
        except ReportError as exc:
            errors["end"] = str(exc)
    return form, errors, start, end, mailbox_id, zone


def _keep_durations(report) -> None:
    """Store the durations this report had to work out, so the next one reads them
    (``services.reports.store_durations``). Only a cache: when the database is busy
    (SQLite locked by the worker) the page is shown all the same."""
    if not report.fills:
        return
    from sqlalchemy.exc import DBAPIError

    from ..extension import get_state

    session = get_state().db.session
    try:
        store_durations(report.fills)
        session.commit()
    except DBAPIError:
        session.rollback()
    report.fills = []


def _scope(mailbox_id):
    """(mailbox ids, agent id) the current user may report on."""
    visible = visible_mailbox_ids()
    if mailbox_id is not None:
        ids = {mailbox_id} if visible is None or mailbox_id in visible else set()
    else:
        ids = visible
    agent = None if is_admin() else user_id(current_user._get_current_object())
    return ids, agent


def register(bp) -> None:
    """Add this module's routes to the dashboard blueprint ``bp``."""

    @bp.route("/reports")
    def reports():
        from ..access import visible_mailboxes

        from ..services.business_hours import timezone_names

        form, errors, start, end, mailbox_id, zone = read_range()
        report = None
        if not errors:
            ids, agent = _scope(mailbox_id)
            report = compute_report(start, end, mailbox_ids=ids, agent_id=agent, tz=zone)
            _keep_durations(report)
        return render_template(
            "shared_inbox/reports.html", form=form, errors=errors, report=report,
            zones=timezone_names(),
            mailboxes=visible_mailboxes(), admin=is_admin(), fmt=format_duration,
            pct=format_percent, chart=_charts(report) if report else None,
            rating_labels=RATING_LABELS,
        ), 400 if errors else 200

    def _csv(kind: str):
        form, errors, start, end, mailbox_id, zone = read_range()
        if errors:
            return Response("\n".join(errors.values()) + "\n", 400, mimetype="text/plain")
        ids, agent = _scope(mailbox_id)
        report = compute_report(start, end, mailbox_ids=ids, agent_id=agent,
                                with_tickets=kind == "tickets", tz=zone)
        if kind == "figures":
            # (Not before the streamed tickets export: a commit would expire the rows it
            # is about to read, after the request's session is gone.)
            _keep_durations(report)
        # The tickets export is streamed (100k rows are formatted and sent a chunk at a time);
        # stream_with_context keeps the database session open until the last row.
        body = figures_csv(report) if kind == "figures" else \
            stream_with_context(iter_tickets_csv(report))
        name = f"{kind}-{start.isoformat()}-{end.isoformat()}.csv"
        return Response(body, mimetype="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{name}"'})

    @bp.route("/reports/figures.csv")
    def reports_figures_csv():
        return _csv("figures")

    @bp.route("/reports/tickets.csv")
    def reports_tickets_csv():
        return _csv("tickets")


def _charts(report) -> dict:
    labels = [d.day.strftime("%d %b") for d in report.days]
    return {
        "per_day": charts.bar_chart(
            labels, [("new", [d.new for d in report.days], "#2563eb"),
                     ("closed", [d.closed for d in report.days], "#16a34a")],
            label="Tickets per day"),
        "first_response": charts.line_chart(
            labels, [d.first_response_median for d in report.days],
            label="Median first response time per day", name="median first response",
            fmt=format_duration),
        "heatmap": charts.heatmap(report.heatmap,
                                  label=f"New tickets by weekday and hour ({report.tz})"),
    }

"""Public pages (no login): the customer's rating of our answer, and an optional comment.

Design choice -- a GET of a rating link records the rating. The email promises one click,
and most help desks record on GET. Mail scanners that prefetch links are the risk: HEAD
requests record nothing, a GET only ever sets the one rating of that ticket (it cannot add
rows or touch anything else), and the page it shows lets the customer change the rating and
add a comment with a POST (CSRF-checked), so the customer's own click always has the last
word. A forged token answers 400, an expired one 410, each with a page that says so.
"""
from __future__ import annotations

from flask import render_template, request

from ..extension import get_state
from ..services.reports import RATING_LABELS, RATINGS
from ..services.satisfaction import MAX_COMMENT, RatingLinkError, read_token, record_rating


def _invalid(exc: RatingLinkError):
    return render_template("shared_inbox/satisfaction_invalid.html", expired=exc.expired,
                           message=str(exc)), 410 if exc.expired else 400


def register_public(bp) -> None:
    """Add this module's routes to the public blueprint ``bp``."""

    def page(ticket, token, rating_row, *, errors=None, comment=None, saved=False,
             status=200):
        return render_template(
            "shared_inbox/satisfaction_thanks.html", ticket=ticket, token=token,
            rating=rating_row, labels=RATING_LABELS, ratings=RATINGS, errors=errors or {},
            comment=rating_row.comment if comment is None and rating_row is not None
            else (comment or ""), saved=saved, max_comment=MAX_COMMENT), status

    @bp.route("/rate/<token>/<rating>", methods=["GET"])
    def rate(token, rating):
        state = get_state()
        try:
            ticket, message_id = read_token(token)
        except RatingLinkError as exc:
            return _invalid(exc)
        if rating not in RATINGS:
            return _invalid(RatingLinkError("This rating link is not valid."))
        if request.method == "HEAD":  # link checkers: record nothing
            return page(ticket, token, ticket.satisfaction)
        row = record_rating(ticket, rating, message_id=message_id)
        state.db.session.commit()
        return page(ticket, token, row)

    @bp.route("/rate/<token>", methods=["POST"])
    def rate_comment(token):
        state = get_state()
        try:
            ticket, message_id = read_token(token)
        except RatingLinkError as exc:
            return _invalid(exc)
        rating = request.form.get("rating") or (
            ticket.satisfaction.rating if ticket.satisfaction is not None else "")
        comment = (request.form.get("comment") or "").replace("\r\n", "\n").strip()
        errors = {}
        if rating not in RATINGS:
            errors["rating"] = "Choose Great, Okay or Not good."
        if len(comment) > MAX_COMMENT:
            errors["comment"] = (f"Please keep the comment under {MAX_COMMENT} characters "
                                 f"(it has {len(comment)}).")
        if errors:
            return page(ticket, token, ticket.satisfaction, errors=errors, comment=comment,
                        status=422)
        row = record_rating(ticket, rating, message_id=message_id, comment=comment)
        state.db.session.commit()
        return page(ticket, token, row, saved=True)

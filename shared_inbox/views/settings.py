"""Settings (admins only): mailboxes and who may see them."""
from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for

from ..access import get_or_404, require_admin, user_id
from ..config import cv
from ..extension import get_state
from ..forms import AFTER_FETCH_CHOICES, IMPORT_CHOICES, SECURITY_CHOICES, MailboxForm
from ..models import utcnow
from ..services.mailboxes import add_member, remove_member

DUPLICATE_ADDRESS = "Another mailbox already uses this address."


def _agents():
    """Agents who are not admins (admins see every mailbox: no membership to choose),
    from the per-process role cache, not a read of the host's whole user table."""
    from ..services.admins import agent_users

    return agent_users(admins=False)


def _address_taken(address: str, mailbox=None) -> bool:
    state = get_state()
    m = state.models
    query = sa.select(m.Mailbox.id).where(m.Mailbox.email_address == address)
    if mailbox is not None:
        query = query.where(m.Mailbox.id != mailbox.id)
    return state.db.session.scalar(query.limit(1)) is not None


def _try_connection(mailbox) -> tuple[bool, str]:
    """(both worked?, one line for a person): IMAP (log in, open the folder), then SMTP
    (log in, would it take mail from the mailbox's address; nothing is sent)."""
    results = [_try_imap(mailbox), _try_smtp(mailbox)]
    # What failed comes first: it is what the admin has to fix.
    ordered = [r for r in results if not r[0]] + [r for r in results if r[0]]
    return all(ok for ok, _ in results), "; ".join(message for _, message in ordered)


def _try_smtp(mailbox) -> tuple[bool, str]:
    from ..crypto import SecretDecryptionError
    from ..mail.oauth import OAuthError
    from ..mail.send import SendError, check_smtp

    try:
        return True, check_smtp(mailbox)
    except (SendError, OAuthError) as exc:
        return False, f"SMTP failed: {exc}"
    except SecretDecryptionError as exc:
        return False, f"SMTP failed: {exc}: enter the password again"


def _try_imap(mailbox) -> tuple[bool, str]:
    """(worked?, one line for a person) for logging in and opening the mailbox's folder."""
    from imapclient.exceptions import IMAPClientError

    from ..crypto import SecretDecryptionError
    from ..mail.imap import MailboxConnectionError, test_connection

    try:
        return True, test_connection(mailbox)
    except MailboxConnectionError as exc:
        return False, str(exc)
    except SecretDecryptionError as exc:
        return False, f"{exc}: enter the password again"
    except (IMAPClientError, OSError) as exc:
        return False, f"the server broke off the connection ({exc.__class__.__name__}: {exc})"


def _test_settings(form: MailboxForm, mailbox=None) -> tuple[bool, str]:
    """Try the form's settings on an unsaved mailbox; nothing reaches the database."""
    state = get_state()
    session = state.db.session
    probe = state.models.Mailbox()
    if mailbox is not None:  # blank password fields mean "the stored one"
        probe.imap_secret, probe.smtp_secret = mailbox.imap_secret, mailbox.smtp_secret
    form.apply(probe)
    try:
        return _try_connection(probe)
    finally:
        if probe in session:
            session.expunge(probe)
        session.rollback()


def register(bp):
    def render_form(form: MailboxForm, mailbox=None, status: int = 200, test_result=None):
        return render_template(
            "shared_inbox/mailbox_form.html", form=form, mailbox=mailbox,
            security_choices=SECURITY_CHOICES, after_fetch_choices=AFTER_FETCH_CHOICES,
            import_choices=IMPORT_CHOICES, test_result=test_result,
            today=utcnow().date().isoformat(), si_sent_folder=cv("SENT_FOLDER"),
        ), status

    def mailbox_form(mailbox=None):
        """GET shows the form; POST saves it, or with action=test tries it without saving."""
        require_admin()
        state = get_state()
        session = state.db.session
        if request.method == "GET":
            form = (MailboxForm(creating=True) if mailbox is None
                    else MailboxForm.from_mailbox(mailbox))
            if mailbox is None:  # new mailboxes start with the site-wide choice
                form.data["ask_for_rating"] = cv("SATISFACTION") is True
            return render_form(form, mailbox)

        form = MailboxForm.from_request(request.form, mailbox=mailbox)
        if form.validate(today=utcnow().date()) and _address_taken(
                form.cleaned["email_address"], mailbox):
            form.add_error("email_address", DUPLICATE_ADDRESS)
        if not form.is_valid:
            return render_form(form, mailbox, 400)

        if request.form.get("action") == "test":
            ok, message = _test_settings(form, mailbox)
            return render_form(form, mailbox, test_result={"ok": ok, "message": message})

        creating = mailbox is None
        target = state.models.Mailbox() if creating else mailbox
        form.apply(target)
        if creating:
            session.add(target)
        try:
            session.commit()
        except sa.exc.IntegrityError:  # another admin saved the same address meanwhile
            session.rollback()
            form.add_error("email_address", DUPLICATE_ADDRESS)
            return render_form(form, mailbox, 400)
        if creating:
            flash(f"Mailbox {target.name} <{target.email_address}> added. "
                  "Add the agents who may see it below.", "success")
        else:
            flash(f"Mailbox {target.name} <{target.email_address}> saved.", "success")
        return redirect(url_for(f"{bp.name}.settings"))

    @bp.route("/settings/")
    def settings():
        require_admin()
        state = get_state()
        m = state.models
        mailboxes = list(state.db.session.scalars(sa.select(m.Mailbox).order_by(m.Mailbox.name)))
        return render_template(
            "shared_inbox/settings.html", mailboxes=mailboxes, agents=_agents(), user_id=user_id,
        )

    @bp.route("/settings/mailboxes/new", methods=["GET", "POST"])
    def mailbox_new():
        return mailbox_form(None)

    @bp.route("/settings/mailboxes/<int:mailbox_id>/edit", methods=["GET", "POST"])
    def mailbox_edit(mailbox_id):
        require_admin()
        return mailbox_form(get_or_404("Mailbox", mailbox_id))

    @bp.route("/settings/mailboxes/<int:mailbox_id>/test", methods=["POST"])
    def mailbox_test(mailbox_id):
        """Log in with the saved settings and open the folder; report what happened."""
        require_admin()
        ok, message = _try_connection(get_or_404("Mailbox", mailbox_id))
        flash(f"Saved settings work: {message}." if ok else f"Connection failed: {message}.",
              "success" if ok else "error")
        return redirect(url_for(f"{bp.name}.mailbox_edit", mailbox_id=mailbox_id))

    @bp.route("/settings/mailboxes/<int:mailbox_id>/members", methods=["POST"])
    def mailbox_members(mailbox_id):
        require_admin()
        state = get_state()
        mailbox = state.db.session.get(state.models.Mailbox, mailbox_id)
        if mailbox is None:
            abort(404)
        by_id = {str(user_id(u)): u for u in _agents()}
        user = by_id.get(request.form.get("user_id", ""))
        if user is None:
            flash("Choose an agent.", "error")
            return redirect(url_for(f"{bp.name}.settings"))
        name = state.extension.display_user(user)["name"]
        if request.form.get("action") == "remove":
            remove_member(mailbox, user)
            flash(f"{name} no longer sees {mailbox.name}.", "success")
        else:
            add_member(mailbox, user)
            flash(f"{name} now sees {mailbox.name}.", "success")
        state.db.session.commit()
        return redirect(url_for(f"{bp.name}.settings"))

"""Small form helpers for the settings pages: plain Python, no WTForms.

A form keeps what the user typed as strings in ``data`` (so a page with errors shows the
input again), one message per field in ``errors``, and the converted values in ``cleaned``
once :meth:`Form.validate` succeeds. Passwords are never put in ``data``: they are kept
aside and never rendered back.
"""
from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import ClassVar

from .mail.net import is_loopback

SECURITY_CHOICES = (
    ("ssl", "SSL/TLS"),
    ("starttls", "STARTTLS"),
    ("plain", "None (only to this machine: 127.0.0.1, localhost, ::1)"),
)
AFTER_FETCH_CHOICES = (
    ("leave", "Leave it untouched"),
    ("seen", "Mark it as read (seen)"),
    ("move", "Move it to a folder"),
)
IMPORT_CHOICES = (
    ("new", "Only new mail (from now on)"),
    ("date", "Everything since a date"),
)

_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]{0,62}"
)
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?"
)


# --- converters: return the value, or raise ValueError with a message for the user --------

def parse_email(value: str) -> str:
    value = value.strip()
    if len(value) > 320 or not _EMAIL.fullmatch(value):
        raise ValueError("Enter an email address like support@example.com.")
    return value.lower()


def parse_port(value: str) -> int:
    value = value.strip()
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError("Enter a port number from 1 to 65535.")
    return int(value)


def parse_host(value: str) -> str:
    value = value.strip()
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(value):
        raise ValueError("Enter a host name like imap.example.com or an IP address.")
    return value.lower()


def parse_date(value: str, *, not_after: date | None = None) -> date:
    try:
        parsed = date.fromisoformat(value.strip())
    except ValueError:
        raise ValueError("Enter a date like 2026-01-31.") from None
    if not_after is not None and parsed > not_after:
        raise ValueError("The date cannot be in the future.")
    return parsed


def parse_choice(value: str, choices) -> str:
    if value not in {key for key, _ in choices}:
        raise ValueError("Choose one of the options.")
    return value


class Form:
    """What the user typed (``data``), what is wrong with it (``errors``), and the result."""

    #: field name -> default shown on an empty form
    defaults: ClassVar[dict[str, object]] = {}

    def __init__(self, data: dict[str, object] | None = None):
        self.data: dict[str, object] = dict(self.defaults)
        self.data.update(data or {})
        self.errors: dict[str, str] = {}
        self.cleaned: dict[str, object] = {}

    def __getitem__(self, name: str):
        value = self.data.get(name, "")
        return "" if value is None else value

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, message)

    def text(self, name: str, *, required: bool = False, max_length: int | None = None,
             label: str = "This field") -> str | None:
        """The stripped text of a field (``cleaned``), or None after recording an error."""
        value = str(self.data.get(name) or "").strip()
        if required and not value:
            self.add_error(name, f"{label} is required.")
            return None
        if max_length is not None and len(value) > max_length:
            self.add_error(name, f"{label} can be at most {max_length} characters long.")
            return None
        self.cleaned[name] = value
        return value

    def convert(self, name: str, parser, *args, required: bool = True,
                label: str = "This field", **kwargs):
        """Run ``parser`` on a field; record its ValueError message as the field's error."""
        value = str(self.data.get(name) or "").strip()
        if not value:
            if required:
                self.add_error(name, f"{label} is required.")
            else:
                self.cleaned[name] = None
            return None
        try:
            result = parser(value, *args, **kwargs)
        except ValueError as exc:
            self.add_error(name, str(exc))
            return None
        self.cleaned[name] = result
        return result

    @property
    def is_valid(self) -> bool:
        return not self.errors


class MailboxForm(Form):
    """Add or edit a mailbox. Passwords are write-only: blank on edit keeps the stored one."""

    TEXT_FIELDS = (
        "name", "email_address", "from_name", "signature", "imap_host", "imap_port",
        "imap_security", "imap_username", "imap_folder", "after_fetch", "move_to_folder",
        "smtp_host", "smtp_port", "smtp_security", "smtp_username", "import_from",
        "import_since",
    )
    defaults: ClassVar[dict[str, object]] = {
        "name": "", "email_address": "", "from_name": "", "signature": "",
        "imap_host": "", "imap_port": "993", "imap_security": "ssl", "imap_username": "",
        "imap_folder": "INBOX", "after_fetch": "leave", "move_to_folder": "",
        "smtp_host": "", "smtp_port": "587", "smtp_security": "starttls", "smtp_username": "",
        "is_active": True, "import_from": "new", "import_since": "", "append_to_sent": False,
        "ask_for_rating": False,
    }

    def __init__(self, data=None, *, creating: bool, has_imap_password: bool = False,
                 has_smtp_password: bool = False):
        super().__init__(data)
        self.creating = creating
        self.has_imap_password = has_imap_password
        self.has_smtp_password = has_smtp_password
        self.imap_password = ""
        self.smtp_password = ""
        self.smtp_same_password = False

    @classmethod
    def from_mailbox(cls, mailbox) -> MailboxForm:
        data = {name: getattr(mailbox, name) for name in cls.defaults
                if name not in ("import_from", "import_since")}
        data["imap_port"] = str(mailbox.imap_port)
        data["smtp_port"] = str(mailbox.smtp_port)
        from .services.satisfaction import enabled_for

        data["ask_for_rating"] = enabled_for(mailbox)  # the config's answer, if never set
        return cls(data, creating=False, has_imap_password=bool(mailbox.imap_secret),
                   has_smtp_password=bool(mailbox.smtp_secret))

    @classmethod
    def from_request(cls, formdata, *, mailbox=None) -> MailboxForm:
        data = {name: formdata.get(name, "") for name in cls.TEXT_FIELDS}
        data["is_active"] = bool(formdata.get("is_active"))
        data["append_to_sent"] = bool(formdata.get("append_to_sent"))
        data["ask_for_rating"] = bool(formdata.get("ask_for_rating"))
        form = cls(
            data, creating=mailbox is None,
            has_imap_password=bool(mailbox is not None and mailbox.imap_secret),
            has_smtp_password=bool(mailbox is not None and mailbox.smtp_secret),
        )
        form.imap_password = formdata.get("imap_password", "")
        form.smtp_password = formdata.get("smtp_password", "")
        form.smtp_same_password = bool(formdata.get("smtp_same_password"))
        return form

    @property
    def typed_a_password(self) -> bool:
        return bool(self.imap_password or self.smtp_password)

    def validate(self, *, today: date) -> bool:
        self.text("name", required=True, max_length=120, label="Name")
        self.convert("email_address", parse_email, label="Email address")
        self.text("from_name", max_length=120, label="From name")
        self.text("signature", max_length=10000, label="Signature")

        imap_host = self.convert("imap_host", parse_host, label="IMAP host")
        self.convert("imap_port", parse_port, label="IMAP port")
        imap_security = self.convert("imap_security", parse_choice, SECURITY_CHOICES,
                                     label="IMAP security")
        if imap_security == "plain" and imap_host and not is_loopback(imap_host):
            self.add_error("imap_security", "Unencrypted IMAP is only allowed to this machine "
                           "(127.0.0.1, localhost); choose SSL/TLS or STARTTLS.")
        self.text("imap_username", max_length=320, label="IMAP user name")
        self.text("imap_folder", required=True, max_length=255, label="Folder")
        after = self.convert("after_fetch", parse_choice, AFTER_FETCH_CHOICES,
                             label="After fetching")
        move_to = self.text("move_to_folder", max_length=255, label="Folder to move to")
        if after == "move" and move_to == "":
            self.add_error("move_to_folder", "Name the folder to move fetched mail to.")
        if after != "move":
            self.cleaned["move_to_folder"] = ""
        if (after == "move" and move_to and move_to == self.cleaned.get("imap_folder")):
            self.add_error("move_to_folder", "Choose a folder other than the one polled.")

        smtp_host = self.convert("smtp_host", parse_host, required=False, label="SMTP host")
        self.convert("smtp_port", parse_port, label="SMTP port")
        smtp_security = self.convert("smtp_security", parse_choice, SECURITY_CHOICES,
                                     label="SMTP security")
        smtp_to = smtp_host or imap_host
        if smtp_security == "plain" and smtp_to and not is_loopback(smtp_to):
            self.add_error("smtp_security", "Unencrypted SMTP is only allowed to this machine "
                           "(127.0.0.1, localhost); choose SSL/TLS or STARTTLS.")
        self.text("smtp_username", max_length=320, label="SMTP user name")
        self.cleaned["is_active"] = bool(self.data.get("is_active"))
        self.cleaned["append_to_sent"] = bool(self.data.get("append_to_sent"))
        self.cleaned["ask_for_rating"] = bool(self.data.get("ask_for_rating"))

        if not self.imap_password and (self.creating or not self.has_imap_password):
            self.add_error("imap_password", "IMAP password is required.")
        for name in ("imap_password", "smtp_password"):
            if len(getattr(self, name)) > 1000:
                self.add_error(name, "This password is too long.")

        if self.creating:
            how = self.convert("import_from", parse_choice, IMPORT_CHOICES,
                               label="How far back to import")
            if how == "date":
                self.convert("import_since", parse_date, not_after=today, label="Import date")
            else:
                self.cleaned["import_since"] = None
        return self.is_valid

    def apply(self, mailbox) -> None:
        """Copy the validated values onto a mailbox (new, edited or an unsaved probe)."""
        c = self.cleaned
        for name in ("name", "email_address", "from_name", "signature", "imap_host",
                     "imap_port", "imap_security", "imap_username", "imap_folder",
                     "after_fetch", "move_to_folder", "smtp_port", "smtp_security",
                     "smtp_username", "is_active", "append_to_sent", "ask_for_rating"):
            setattr(mailbox, name, c[name])
        mailbox.smtp_host = c["smtp_host"] or c["imap_host"]
        if self.imap_password:
            mailbox.imap_password = self.imap_password
            mailbox.needs_reauth = False
        if self.smtp_password:
            mailbox.smtp_password = self.smtp_password
        elif self.smtp_same_password:
            mailbox.smtp_secret = None  # fall back to the IMAP password
        if self.creating:
            since = c.get("import_since")
            mailbox.import_since = datetime(since.year, since.month, since.day) if since else None

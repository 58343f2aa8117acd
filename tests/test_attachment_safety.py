"""Hostile attachment names and types: stored safely, downloaded as attachments, never rendered.

A customer controls every byte of an attachment's name and type. Names with path traversal,
control characters, bidi overrides or absurd length must not reach the file system (storage
keys come from the content's hash, never from the name), must be shown harmlessly, and must
come back in a ``Content-Disposition: attachment`` header that cannot be split or spoofed.
HTML and SVG never render on the dashboard's origin, not even as inline ``cid:`` images.
"""
from __future__ import annotations

import os
import re
import unicodedata
from datetime import timedelta
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa

from shared_inbox.mail.imap import poll_mailbox
from shared_inbox.models import utcnow

NASTY_NAMES = {
    "traversal": "../../../../tmp/evil.sh",
    "windows": "..\\..\\Windows\\System32\\evil.dll",
    "absolute": "/etc/passwd",
    "crlf": "invoice\r\nContent-Type: text/html\r\n\r\n<script>.pdf",
    "nul": "a\x00b\x07c.pdf",
    "rtl": "invoice\u202efdp.exe",
    "isolate": "x\u2066y\u2069z.txt",
    "zero-width": "pay\u200bpal\ufeff.pdf",
    "huge": "A" * 5000 + ".pdf",
    "huge-ext": "report." + "x" * 3000,
    "dotdot": "..",
    "dot": ".",
    "reserved": "CON.txt",
    "unicode": "Résumé – 履歴書.pdf",
    "quote": 'say "hi"; filename=evil.html',
    "percent": "100%25 %0d%0a.pdf",
}

SVG = (b'<svg xmlns="http://www.w3.org/2000/svg" onload="document.title=\'pwned\'">'
       b'<script>document.title="pwned"</script></svg>')
HTML = b"<html><body><script>document.title='pwned'</script>Hello</body></html>"

SNEAKY = b"<html><script>document.title='sniffed'</script></html>"

BIDI_AND_CONTROL = re.compile("[\x00-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _part(boundary: str, filename: str, ctype: str, payload: bytes, *, cid: str | None = None,
          disposition: str = "attachment") -> bytes:
    """One MIME part; the name goes in RFC 2231 form so every byte survives transport."""
    head = [f"--{boundary}", f"Content-Type: {ctype}",
            f"Content-Disposition: {disposition}; filename*=UTF-8''{quote(filename, safe='')}",
            "Content-Transfer-Encoding: base64"]
    if cid:
        head.append(f"Content-ID: <{cid}>")
    import base64
    return ("\r\n".join(head) + "\r\n\r\n").encode() + base64.encodebytes(payload) + b"\r\n"


def hostile_mail() -> bytes:
    b = "BOUNDARY-outer"
    rel = "BOUNDARY-related"
    parts = [
        f"From: Mallory <mallory@example.org>\r\nTo: support@example.com\r\n"
        f"Subject: Files\r\nMessage-ID: <files-1@example.org>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: multipart/mixed; boundary=\"{b}\"\r\n\r\n".encode(),
        # An HTML body that shows an inline SVG (with script) and an inline PNG.
        f"--{b}\r\nContent-Type: multipart/related; boundary=\"{rel}\"\r\n\r\n".encode(),
        f"--{rel}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<p>Look <img src=\"cid:evil-svg\" alt=\"svg\"> <img src=\"cid:good-png\" alt=\"png\"></p>"
        f"\r\n".encode(),
        _part(rel, "inline.svg", "image/svg+xml", SVG, cid="evil-svg", disposition="inline"),
        _part(rel, "inline.png", "image/png", _png(), cid="good-png", disposition="inline"),
        f"--{rel}--\r\n".encode(),
    ]
    for key, name in NASTY_NAMES.items():
        parts.append(_part(b, name, "application/octet-stream", f"payload {key}".encode()))
    parts.append(_part(b, "page.html", "text/html", HTML))
    parts.append(_part(b, "drawing.svg", "image/svg+xml", SVG))
    parts.append(_part(b, "sneaky.png", "image/png", SNEAKY))  # claims PNG, is HTML
    parts.append(f"--{b}--\r\n".encode())
    return b"".join(parts)


def _png() -> bytes:
    from shared_inbox.mail.demo_mail import tiny_png
    return tiny_png()


@pytest.fixture
def ingested(host, mail_server):
    mail_server.deliver("support@example.com", hostile_mail())
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Support", email_address="support@example.com",
                            imap_host="127.0.0.1", imap_port=mail_server.imap_port,
                            imap_security="plain", imap_username="support@example.com",
                            import_since=utcnow() - timedelta(days=1))
        mailbox.imap_password = mail_server.users["support@example.com"]
        host.db.session.add(mailbox)
        host.db.session.commit()
        assert poll_mailbox(mailbox).ingested == 1
        atts = host.db.session.scalars(sa.select(m.Attachment).order_by(m.Attachment.id)).all()
        rows = [{"id": a.id, "filename": a.filename, "key": a.storage_key, "type": a.content_type,
                 "cid": a.content_id, "data": host.app.extensions["shared_inbox"].storage.get(
                     a.storage_key)} for a in atts]
        ticket_id = atts[0].message.ticket_id
    client = host.app.test_client()
    host.login(client, host.add_user("boss@x.test", role="admin"))
    return {"rows": rows, "ticket": ticket_id, "client": client}


def _by_payload(rows, payload: bytes):
    return next(r for r in rows if r["data"] == payload)


def test_every_part_is_kept_under_a_safe_name(ingested):
    rows = ingested["rows"]
    for key in NASTY_NAMES:
        row = _by_payload(rows, f"payload {key}".encode())  # none was dropped
        name = row["filename"]
        assert name and name not in (".", "..") and not name.startswith("."), (key, name)
        assert "/" not in name and "\\" not in name, (key, name)
        assert not BIDI_AND_CONTROL.search(name), (key, name)
        assert not any(unicodedata.category(c) in ("Cc", "Cf") for c in name), (key, name)
        assert len(name) <= 200, (key, len(name))
        assert name.split(".")[0].upper() not in ("CON", "PRN", "AUX", "NUL"), (key, name)
    assert _by_payload(rows, b"payload unicode")["filename"] == "Résumé – 履歴書.pdf"
    assert _by_payload(rows, b"payload huge")["filename"].endswith(".pdf")


def test_storage_keys_never_come_from_the_name_and_nothing_escapes_the_storage_root(
        host, ingested):
    root = os.path.abspath(host.app.config["SHARED_INBOX_ATTACHMENT_DIR"])
    for row in ingested["rows"]:
        assert re.fullmatch(r"att/[0-9a-f]{2}/[0-9a-f]{64}", row["key"]), row["key"]
    # No file was created anywhere but under the storage root (and the database).
    base = os.path.dirname(root)
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            path = os.path.abspath(os.path.join(dirpath, name))
            assert path.startswith(root + os.sep) or name.startswith("host.db"), path
            assert "evil" not in name and "passwd" not in name, path


def _disposition_filename(header: str) -> str:
    """The name a browser uses (RFC 6266: ``filename*`` wins over ``filename``)."""
    star = re.search(r"filename\*=UTF-8''([^;\s]+)", header, re.I)
    if star:
        return unquote(star.group(1))
    plain = re.search(r'filename="((?:[^"\\]|\\.)*)"|filename=([^;\s]+)', header)
    assert plain, header
    return plain.group(1) if plain.group(1) is not None else plain.group(2)


def test_downloads_are_attachments_with_the_stored_name_and_no_header_injection(ingested):
    client = ingested["client"]
    for row in ingested["rows"]:
        for query in ("", "?inline=1"):
            r = client.get(f"/support/attachments/{row['id']}{query}")
            assert r.status_code == 200
            assert r.data == row["data"]
            assert r.headers["X-Content-Type-Options"] == "nosniff"
            header = r.headers["Content-Disposition"]
            assert "\r" not in header and "\n" not in header
            raster = row["type"] in ("image/png", "image/jpeg", "image/gif", "image/webp")
            if query and raster:
                assert header.startswith("inline"), header
            else:
                assert header.startswith("attachment"), header
            # The browser saves it under exactly the name shown on the ticket page.
            assert _disposition_filename(header) == row["filename"], header
            assert not BIDI_AND_CONTROL.search(_disposition_filename(header))


def test_html_and_svg_never_render_on_our_origin(ingested):
    client = ingested["client"]
    rows = ingested["rows"]
    for payload in (HTML, SVG):
        for row in (r for r in rows if r["data"] == payload):
            for query in ("", "?inline=1"):
                r = client.get(f"/support/attachments/{row['id']}{query}")
                assert r.headers["Content-Disposition"].startswith("attachment")
                assert r.mimetype == "application/octet-stream", (row["filename"], r.mimetype)
                assert "default-src" in r.headers["Content-Security-Policy"]
    # HTML claiming to be a PNG: served as image/png (never sniffed thanks to nosniff)
    sneaky = next(r for r in rows if r["filename"] == "sneaky.png")
    r = client.get(f"/support/attachments/{sneaky['id']}?inline=1")
    assert r.mimetype == "image/png" and r.headers["X-Content-Type-Options"] == "nosniff"


def test_inline_cid_svg_is_not_shown_but_the_png_is(ingested):
    client = ingested["client"]
    rows = ingested["rows"]
    page = client.get(f"/support/tickets/{ingested['ticket']}").get_data(as_text=True)
    svg = next(r for r in rows if r["cid"] == "evil-svg")
    png = next(r for r in rows if r["cid"] == "good-png")
    assert f"/support/attachments/{png['id']}?inline=1" in page
    assert f"/support/attachments/{svg['id']}?inline=1" not in page
    assert "document.title" not in page


def test_names_are_shown_escaped_on_the_ticket_page(ingested):
    client = ingested["client"]
    page = client.get(f"/support/tickets/{ingested['ticket']}").get_data(as_text=True)
    assert "<script>" not in page.split("srcdoc=")[0]
    assert "Résumé – 履歴書.pdf" in page
    assert "\u202e" not in page and "\x00" not in page


def test_uploaded_reply_attachments_get_the_same_care(host, mail_server):
    """An agent's browser also chooses names: a reply's uploads are cleaned the same way."""
    import io

    from shared_inbox.csrf import SESSION_KEY

    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Support", email_address="support@example.com",
                            smtp_host="127.0.0.1", smtp_port=mail_server.smtp_port,
                            smtp_security="plain")
        customer = m.Customer(email="alice@example.org", name="Alice")
        ticket = m.Ticket(mailbox=mailbox, customer=customer, subject="Hi")
        host.db.session.add(ticket)
        host.db.session.flush()
        host.db.session.add(m.Message(ticket_id=ticket.id, mailbox_id=mailbox.id, kind="inbound",
                                      from_email="alice@example.org", body_text="Hi"))
        host.db.session.commit()
        ticket_id = ticket.id
    client = host.app.test_client()
    host.login(client, host.add_user("boss@x.test", role="admin"))
    with client.session_transaction() as sess:
        sess[SESSION_KEY] = "tok"
    files = [(io.BytesIO(f"upload {k}".encode()), name)
             for k, name in NASTY_NAMES.items() if "\x00" not in name and "\r" not in name]
    r = client.post(f"/support/tickets/{ticket_id}/reply", data={
        "csrf_token": "tok", "text": "Here you go", "attachments": files},
        content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    with host.app.app_context():
        m = host.inbox.models
        names = [a.filename for a in host.db.session.scalars(
            sa.select(m.Attachment).join(m.Message).where(m.Message.kind == "outbound"))]
    assert len(names) == len(files)
    for name in names:
        assert name and name not in (".", "..") and "/" not in name and "\\" not in name, name
        assert not BIDI_AND_CONTROL.search(name) and len(name) <= 200, name

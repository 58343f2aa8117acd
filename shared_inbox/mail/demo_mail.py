"""Realistic customer emails for the demo shop "Acme Outdoor".

Why: the demo and the tests need mail that looks like what a small shop's
help desk really gets -- threads whose replies quote earlier mail, HTML
newsletters full of tracking pixels and scripts, attachments, inline images,
non-ASCII names and legacy charsets, auto-replies -- so that threading,
sanitising, charset handling and customer matching are exercised by the
demo itself, not only by unit tests.

Usage::

    for rcpt, raw in demo_messages():
        server.deliver(rcpt, raw)          # or send via SMTP

The list is in chronological order (so UID order == date order).
Message-IDs are fixed (``<demo-NN-...@sender-domain>``), so seeding the same
server twice yields duplicates a Message-ID check can detect rather than
"new" mail.  Dates are relative to ``now`` (default: the current time,
truncated to the minute) so the inbox looks fresh; pass a fixed ``now`` for
byte-identical output.

Customers match the example shop: alice@example.org, bob@example.org,
zoe@example.org, jose@example.org, taro@example.jp; order numbers used are
within #1001-#1020 (#1003, #1005, #1008, #1012, #1017).

Threading notes for the help-desk code:

* Alice's follow-up (demo-04) replies to a support answer that is *not* in
  the list (it would have been sent by the app); ``In-Reply-To`` names that
  answer, ``References`` also names demo-01 -- a threader must fall back to
  ``References``.
* Taro's follow-up (demo-08) replies directly to his own demo-07
  (``In-Reply-To`` is in the list).
* Bob's bulk-order mail (demo-02) replies to a sales quote whose ancestors
  are unknown: it should open a new ticket.
"""

from __future__ import annotations

import struct
import zlib
from datetime import datetime, timedelta, timezone
import email
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["demo_messages", "tiny_png", "tiny_pdf"]

_POLICY = policy.SMTP  # CRLF line endings, RFC 2047 for non-ASCII headers

ALICE = Address("Alice Johnson", addr_spec="alice@example.org")
BOB = Address("Bob Carter", addr_spec="bob@example.org")
ZOE = Address("Zoë Müller", addr_spec="zoe@example.org")
JOSE = Address("José Núñez", addr_spec="jose@example.org")
TARO = Address("山田 太郎", addr_spec="taro@example.jp")
NEWSLETTER = Address("Summit Supply Co.",
                     addr_spec="news@summit-supply.example.net")


# --- tiny but valid binary attachments -------------------------------------

def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def tiny_png(width: int = 24, height: int = 16,
             color: tuple[int, int, int] = (46, 125, 50)) -> bytes:
    """A valid RGB PNG: a green field with a darker triangle ("a tent")."""
    dark = tuple(max(0, c - 40) for c in color)
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0
        for x in range(width):
            inside = abs(x - width // 2) <= y * width // (2 * height)
            row += bytes(dark if inside else color)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9))
            + _png_chunk(b"IEND", b""))


def tiny_pdf(text: str = "Purchase order") -> bytes:
    """A valid one-page PDF with a correct xref table."""
    safe = text.encode("latin-1", "replace").replace(b"\\", b"\\\\") \
        .replace(b"(", b"\\(").replace(b")", b"\\)")
    stream = b"BT /F1 18 Tf 72 720 Td (" + safe + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += (b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


# --- helpers ----------------------------------------------------------------

def _quote(text: str) -> str:
    """Quote like a mail client: '> ' before text, '>' before blank/'>'."""
    return "\n".join(">" + ("" if not line or line.startswith(">") else " ")
                     + line for line in text.splitlines())


def _on_wrote(when: datetime, who: Address) -> str:
    stamp = when.strftime("%a, %d %b %Y at %H:%M")
    return f"On {stamp}, {who.display_name} <{who.addr_spec}> wrote:"


def _legacy_headers(raw: bytes, charset: str, names: tuple[str, ...]) -> bytes:
    """Re-encode some headers' RFC 2047 words in ``charset``.

    EmailMessage always encodes non-ASCII headers as UTF-8; old Outlook and
    webmail clients use the body's legacy charset instead, which decoders
    must handle too.
    """
    head, sep, body = raw.partition(b"\r\n\r\n")
    parsed = email.message_from_bytes(head + sep, policy=_POLICY)
    lines = head.split(b"\r\n")
    for name in names:
        header = parsed[name]
        if hasattr(header, "addresses"):  # encode only the display name
            addr = header.addresses[0]
            encoded = Header(addr.display_name, charset).encode() \
                + f" <{addr.addr_spec}>"
        else:
            encoded = Header(str(header), charset, header_name=name) \
                .encode(linesep="\r\n")
        prefix = name.encode("ascii") + b":"
        start = next(i for i, line in enumerate(lines)
                     if line.startswith(prefix))
        end = start + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1  # folded continuation lines
        lines[start:end] = [prefix + b" " + encoded.encode("ascii")]
    return b"\r\n".join(lines) + sep + body


def _serialize(msg: EmailMessage) -> bytes:
    """Bytes with fixed MIME boundaries, so output is reproducible."""
    tag = str(msg["Message-ID"]).strip("<>").split("@")[0]
    for number, part in enumerate(msg.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_{tag}-{number}_=")
    return msg.as_bytes(policy=_POLICY)


def _new(n: int, sender: Address, to: str, subject: str, when: datetime,
         suffix: str) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<demo-{n:02d}-{suffix}@{sender.domain}>"
    return msg


# --- the messages -------------------------------------------------------------

def demo_messages(domain: str = "example.com",
                  now: datetime | None = None) -> list[tuple[str, bytes]]:
    """Return ``(recipient, raw RFC 5322 bytes)`` for the demo inbox.

    ``domain`` is the shop's mail domain (support@, sales@, billing@ live
    there).  ``now`` anchors the Date headers (spread over ~4 days before
    it); it defaults to the current UTC time truncated to the minute.
    """
    if now is None:
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)

    def ago(days: float = 0, hours: float = 0, minutes: float = 0,
            tz: timezone = timezone.utc) -> datetime:
        return (now - timedelta(days=days, hours=hours, minutes=minutes)) \
            .astimezone(tz)

    support = f"support@{domain}"
    sales = f"sales@{domain}"
    billing = f"billing@{domain}"
    support_addr = Address("Acme Outdoor Support", addr_spec=support)
    sales_addr = Address("Acme Outdoor Sales", addr_spec=sales)
    eastern = timezone(timedelta(hours=-5))
    cet = timezone(timedelta(hours=1))
    jst = timezone(timedelta(hours=9))
    out: list[tuple[str, bytes]] = []

    def add(rcpt: str, msg: EmailMessage) -> None:
        out.append((rcpt, _serialize(msg)))

    # 01 -- Alice: broken tent pole (start of a thread) --------------------
    t01 = ago(days=4, hours=3, tz=eastern)
    body01 = (
        "Hello,\n\n"
        "I bought the Ridgeline 2P tent (order #1003) last month and on our\n"
        "first trip one of the main poles snapped at the second joint while\n"
        "I was pitching it. No wind, nothing unusual -- it just cracked.\n\n"
        "Is this covered by the warranty? We have another trip planned in\n"
        "two weeks, so a replacement pole would be great.\n\n"
        "Thanks,\nAlice Johnson\n")
    m01 = _new(1, ALICE, support, "Tent pole snapped on first trip "
               "(order #1003)", t01, "pole")
    m01["User-Agent"] = "Mozilla Thunderbird"
    m01.set_content(body01)
    add(support, m01)

    # 02 -- Bob: bulk order, replying to a sales quote we don't have ----------
    t_quote = ago(days=3, hours=22, tz=timezone.utc)
    t02 = ago(days=3, hours=20, tz=eastern)
    quote_id = f"<quote-2291@{domain}>"
    quote_text = (
        "Hi Bob,\n\n"
        "Thanks for your interest! For 40 x Trailhead 45L backpacks we can\n"
        "offer $64.00 per unit (list price $89.00), free shipping, delivery\n"
        "within 10 business days. The quote is valid for 14 days.\n\n"
        "Best regards,\nMaya\nAcme Outdoor Sales")
    m02 = _new(2, BOB, sales, "Re: Quote for 40 x Trailhead 45L backpacks",
               t02, "bulk")
    m02["In-Reply-To"] = quote_id
    m02["References"] = quote_id
    m02.set_content(
        "Hi Maya,\n\n"
        "That works for us. Two questions before I send the purchase order\n"
        "for the scout troop:\n\n"
        "1. Can we get 25 in forest green and 15 in orange?\n"
        "2. Could you add 40 rain covers at a similar discount?\n\n"
        "Our PO number will be ST-2291. Invoice to the troop address please.\n\n"
        "Cheers,\nBob Carter\nTroop 42 quartermaster\n\n"
        f"{_on_wrote(t_quote, sales_addr)}\n{_quote(quote_text)}\n")
    add(sales, m02)

    # 03 -- José: legacy charset (ISO-8859-1) --------------------------------
    t03 = ago(days=3, hours=6, tz=cet)
    m03 = _new(3, JOSE, support, "¿Qué gas usa el hornillo Campfire Mini?",
               t03, "stove")
    m03["X-Mailer"] = "Microsoft Outlook 16.0"
    m03.set_content(
        "Hola,\n\n"
        "Compré el hornillo Campfire Mini (pedido #1008). ¿Es compatible con\n"
        "los cartuchos de gas de rosca (EN417) que venden aquí en España, o\n"
        "sólo con los de válvula? No quiero estropearlo.\n\n"
        "Muchas gracias y un saludo,\n"
        "José Núñez\n", charset="iso-8859-1", cte="quoted-printable")
    out.append((support, _legacy_headers(_serialize(m03),
                                          "iso-8859-1", ("From", "Subject"))))

    # 04 -- Alice's follow-up: quotes support's reply (not in the list) ------
    t_reply = ago(days=3, hours=1, tz=timezone.utc)
    reply_id = f"<reply-1003-1@{domain}>"
    support_reply = (
        "Hi Alice,\n\n"
        "I'm sorry to hear about the pole! The Ridgeline poles are covered\n"
        "for two years, so this is definitely a warranty case. Could you\n"
        "send us a photo of the broken section so we can ship the right\n"
        "segment?\n\n"
        "Best,\nDana\nAcme Outdoor Support\n\n"
        f"{_on_wrote(t01, ALICE)}\n{_quote(body01.rstrip())}")
    t04 = ago(days=2, hours=21, tz=eastern)
    m04 = _new(4, ALICE, support, "Re: Tent pole snapped on first trip "
               "(order #1003)", t04, "pole")
    m04["In-Reply-To"] = reply_id
    m04["References"] = f"{m01['Message-ID']} {reply_id}"
    m04["User-Agent"] = "Mozilla Thunderbird"
    m04.set_content(
        "Hi Dana,\n\n"
        "Thank you for the quick answer! Photo of the snapped section is\n"
        "attached. It's the long hub pole, the break is right at the ferrule.\n\n"
        "Our address is the same as on the order.\n\n"
        "Alice\n\n"
        f"{_on_wrote(t_reply, support_addr)}\n{_quote(support_reply)}\n")
    m04.add_attachment(tiny_png(color=(120, 120, 130)), maintype="image",
                       subtype="png", filename="broken-pole.png")
    add(support, m04)

    # 05 -- HTML newsletter to sales@ (tracking pixel, script, tables) -------
    t05 = ago(days=2, hours=14, tz=timezone.utc)
    m05 = _new(5, NEWSLETTER, sales, "Spring wholesale catalogue: 20% off "
               "all stoves", t05, "newsletter")
    m05["List-Unsubscribe"] = \
        "<https://summit-supply.example.net/unsubscribe?u=acme>"
    m05["List-Id"] = "Summit Supply trade news <trade.summit-supply.example.net>"
    m05["Precedence"] = "bulk"
    m05.set_content(
        "Summit Supply Co. -- Spring wholesale catalogue\n\n"
        "20% off all stoves until the end of the month.\n"
        "* Campfire Mini stove -- $31.20 (was $39.00)\n"
        "* Basecamp Duo stove -- $71.20 (was $89.00)\n\n"
        "Order: https://summit-supply.example.net/trade\n"
        "Unsubscribe: https://summit-supply.example.net/unsubscribe?u=acme\n")
    m05.add_alternative(
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        "<title>Spring catalogue</title>"
        "<style>body{margin:0} .cta{background:#e65100}</style>"
        "<script>document.cookie='seen=1';fetch('https://tracker.example.net"
        "/collect?u=acme');</script></head>"
        '<body style="font-family:Arial,sans-serif;background:#f4f4f4">'
        '<table width="600" align="center" cellpadding="0" cellspacing="0" '
        'style="background:#ffffff;border:1px solid #ddd">'
        '<tr><td style="background:#1b5e20;color:#fff;padding:20px;'
        'font-size:24px">Summit Supply Co.</td></tr>'
        '<tr><td style="padding:20px"><h1 style="color:#1b5e20">'
        "Spring wholesale catalogue</h1>"
        "<p>20% off <b>all stoves</b> until the end of the month.</p>"
        '<table width="100%" style="border-collapse:collapse">'
        '<tr><th align="left">Item</th><th align="right">Trade</th>'
        '<th align="right">Was</th></tr>'
        '<tr><td>Campfire Mini stove</td><td align="right">$31.20</td>'
        '<td align="right"><s>$39.00</s></td></tr>'
        '<tr><td>Basecamp Duo stove</td><td align="right">$71.20</td>'
        '<td align="right"><s>$89.00</s></td></tr></table>'
        '<p><a class="cta" href="https://summit-supply.example.net/trade" '
        "onclick=\"track('cta')\" style=\"color:#fff;padding:10px 16px;"
        'text-decoration:none;display:inline-block">Order now</a></p>'
        '<p style="font-size:11px;color:#888"><a href="javascript:alert(1)">'
        "View in browser</a> | "
        '<a href="https://summit-supply.example.net/unsubscribe?u=acme">'
        "Unsubscribe</a></p></td></tr></table>"
        '<img src="https://tracker.example.net/p.gif" width="1" height="1" '
        'alt="" style="display:none">'
        "</body></html>\n", subtype="html")
    add(sales, m05)

    # 06 -- Zoë: refund request to billing@ (UTF-8, quoted-printable) -------
    t06 = ago(days=2, hours=3, tz=cet)
    m06 = _new(6, ZOE, billing, "Rückerstattung / refund for order #1012",
               t06, "refund")
    m06.set_content(
        "Hallo Acme Outdoor team,\n\n"
        "I returned the Alpine 30L backpack from order #1012 two weeks ago\n"
        "(tracking DHL 00340434161094042557, delivered to you on the 3rd),\n"
        "but I have not received the refund of €84.90 yet.\n\n"
        "Could you please check? Paid by credit card ending in 4242.\n\n"
        "Viele Grüße,\nZoë Müller\nMünchen\n", cte="quoted-printable")
    add(billing, m06)

    # 07 -- Taro: Japanese, UTF-8 base64 --------------------------------------
    t07 = ago(days=1, hours=18, tz=jst)
    body07 = (
        "Acme Outdoor ご担当者様\n\n"
        "注文番号 #1017 でテント「Ridgeline 2P」を注文しました山田です。\n"
        "配送状況が「準備中」のまま5日経っていますが、いつ発送されますか？\n"
        "来週末のキャンプに間に合うと助かります。\n\n"
        "よろしくお願いいたします。\n山田 太郎\n")
    m07 = _new(7, TARO, support, "テントの配送について (注文番号 #1017)",
               t07, "delivery")
    m07.set_content(body07, cte="base64")
    add(support, m07)

    # 08 -- Taro again, replying to his own mail (In-Reply-To in list) -------
    t08 = ago(days=1, hours=17, tz=jst)
    m08 = _new(8, TARO, support, "Re: テントの配送について (注文番号 #1017)",
               t08, "delivery")
    m08["In-Reply-To"] = m07["Message-ID"]
    m08["References"] = m07["Message-ID"]
    m08.set_content(
        "追伸：配送先は注文時と同じ東京の住所でお願いします。\n"
        "(P.S. Please ship to the same Tokyo address as on the order.)\n\n"
        f"{_on_wrote(t07, TARO)}\n{_quote(body07.rstrip())}\n", cte="base64")
    add(support, m08)

    # 09 -- Bob: PDF attachment to billing@ ----------------------------------
    t09 = ago(days=1, hours=9, tz=eastern)
    m09 = _new(9, BOB, billing, "Invoice needed for order #1005 "
               "(PO attached)", t09, "invoice")
    m09.set_content(
        "Hello,\n\n"
        "Our treasurer needs a proper invoice with the troop's tax ID for\n"
        "order #1005. Purchase order ST-2290 is attached.\n\n"
        "Thanks,\nBob Carter\n")
    m09.add_attachment(tiny_pdf("Purchase order ST-2290 - Troop 42"),
                       maintype="application", subtype="pdf",
                       filename="PO-ST-2290.pdf")
    add(billing, m09)

    # 10 -- Zoë: HTML with an inline cid: image (multipart/related) ----------
    t10 = ago(hours=20, tz=cet)
    m10 = _new(10, ZOE, support, "Kocher zündet nicht / stove won't light",
               t10, "stove")
    m10["X-Mailer"] = "Apple Mail (2.3774.200.91.1.1)"
    m10.set_content(
        "Hi,\n\nmy Basecamp Duo stove won't light any more; the igniter\n"
        "clicks but there is no spark. Photo below.\n\nZoë\n")
    cid = "stove-photo.3F1A@zoe.example.org"
    m10.add_alternative(
        '<html><body style="font-family:-apple-system,Helvetica">'
        "<p>Hi,</p><p>my <b>Basecamp Duo</b> stove won&rsquo;t light any "
        "more; the igniter clicks but there is no spark. Photo below.</p>"
        f'<p><img src="cid:{cid}" alt="stove igniter" width="240"></p>'
        "<p>Zoë</p></body></html>\n", subtype="html")
    html_part = m10.get_payload()[1]
    html_part.add_related(tiny_png(color=(200, 90, 30)), maintype="image",
                          subtype="png", cid=f"<{cid}>",
                          filename="IMG_4711.png", disposition="inline")
    add(support, m10)

    # 11 -- Alice: quick pre-sales question ----------------------------------
    t11 = ago(hours=9, tz=eastern)
    m11 = _new(11, ALICE, sales, "Do you ship to Canada?", t11, "shipping")
    m11.set_content(
        "Hi there,\n\n"
        "My sister in Vancouver wants the same tent. Do you ship to Canada,\n"
        "and roughly how much would shipping and duties be?\n\nAlice\n")
    add(sales, m11)

    # 12 -- Bob: HTML-only mail from a webmail client ------------------------
    t12 = ago(hours=4, tz=eastern)
    m12 = _new(12, BOB, support, "Hip belt buckle broke on Trailhead 45L",
               t12, "buckle")
    m12.set_content(
        "<div dir=\"ltr\"><div>Hi,</div><div><br></div>"
        "<div>the hip belt buckle on my Trailhead 45L (order #1005) broke "
        "on a day hike &mdash; the left prong just sheared off.</div>"
        "<div><br></div><div>Do you sell replacement buckles, or is it a "
        "warranty repair?</div><div><br></div><div>Bob</div></div>\n",
        subtype="html")
    add(support, m12)

    # 13 -- José: out-of-office auto-reply (must not trigger auto-replies) ---
    t13 = ago(hours=1, minutes=30, tz=cet)
    m13 = _new(13, JOSE, support, "Respuesta automática: ¿Qué gas usa el "
               "hornillo Campfire Mini?", t13, "autoreply")
    m13["Auto-Submitted"] = "auto-replied"
    m13["X-Auto-Response-Suppress"] = "All"
    m13["In-Reply-To"] = f"<reply-1008-1@{domain}>"
    m13["References"] = f"{m03['Message-ID']} <reply-1008-1@{domain}>"
    m13.set_content(
        "Estoy de vacaciones hasta el lunes, sin acceso al correo.\n"
        "I'm on holiday until Monday with no access to email.\n\n"
        "José Núñez\n", charset="iso-8859-1")
    out.append((support, _legacy_headers(_serialize(m13),
                                          "iso-8859-1", ("From", "Subject"))))

    return out


def _dump(path: str = "demo-mail") -> None:  # pragma: no cover - dev aid
    """Write the messages as .eml files, handy to eyeball in a mail client."""
    import os
    os.makedirs(path, exist_ok=True)
    for number, (rcpt, raw) in enumerate(demo_messages(), start=1):
        name = f"{number:02d}-{rcpt.split('@')[0]}.eml"
        with open(os.path.join(path, name), "wb") as fh:
            fh.write(raw)


if __name__ == "__main__":  # pragma: no cover
    _dump()

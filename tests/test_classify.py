"""Tests for shared_inbox.mail.classify: bounces, auto-replies and list mail.

Real delivery reports and ordinary mail come from the corpus outside the project (see
/work/shared/corpus/MANIFEST.md), used in place; those tests skip when it is absent.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from shared_inbox.mail import classify as classify_module
from shared_inbox.mail.classify import Classification, classify
from shared_inbox.mail.parse import ParsedMessage, parse_message

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
RAW_FOLDERS = ("stalwart-mail-parser", "mikel-mail", "redmine", "talon")


def run(raw: bytes) -> Classification:
    return classify(raw, parse_message(raw))


def corpus_file(relative: str) -> bytes:
    path = CORPUS / relative
    if not path.is_file():
        pytest.skip(f"corpus file {relative} not available")
    return path.read_bytes()


def corpus_emails() -> list[Path]:
    files: list[Path] = []
    for folder in RAW_FOLDERS:
        base = CORPUS / folder
        if base.is_dir():
            files.extend(sorted(base.rglob("*.eml")))
    return files


def mail(*header_lines: str, body: str = "Hello, where is my order?\r\n",
         content_type: str | None = "text/plain; charset=utf-8") -> bytes:
    head = [
        "From: Alice Customer <alice@example.org>",
        "To: support@shop.example",
        "Date: Mon, 2 Mar 2026 10:00:00 +0000",
        "Message-ID: <m1@example.org>",
        "MIME-Version: 1.0",
    ]
    names = {h.split(":", 1)[0].lower() for h in header_lines}
    head = [h for h in head if h.split(":", 1)[0].lower() not in names]
    if content_type and "content-type" not in names:
        head.append(f"Content-Type: {content_type}")
    if "subject" not in names:
        head.append("Subject: Where is my order?")
    return ("\r\n".join(head + list(header_lines)) + "\r\n\r\n" + body).encode("utf-8")


def neutral(c: Classification) -> bool:
    return not (c.is_bounce or c.is_auto_submitted or c.is_list or c.suppress_autoreply
                or c.failed_recipients or c.bounced_message_id or c.delayed_recipients)


# =========================================================================== corpus: DSNs

# Every delivery report of the corpus, with what the file itself says: the failed (or
# delayed) recipients in its message/delivery-status part and the Message-ID of the
# returned message/rfc822 or text/rfc822-headers part.
def expect(*, is_bounce: bool, failed: list[str], delayed: list[str], bounced: str) -> dict:
    return {"is_bounce": is_bounce, "failed": failed, "delayed": delayed, "bounced": bounced}


CORPUS_REPORTS = {
    "mikel-mail/multipart_report_emails/multi_address_bounce1.eml": expect(
        is_bounce=True,
        failed=["bbbbvhvbbvkjbhfbvbvjhb@gmail.com", "bscdbcjhasbcjhbdscbhbsdhcbj@gmail.com",
                "egyfefsdvsfvvhjsd@gmail.com", "kfhejkfbsjkjsbhds@gmail.com",
                "qfvhgsvhgsduiohncdhcvhsdfvsfygusd@gmail.com"],
        delayed=[], bounced="118707422.15521266992174819.JavaMail.root@lvmail01"),
    "mikel-mail/multipart_report_emails/multi_address_bounce2.eml": expect(
        is_bounce=True,
        failed=["bbbbvhvbbvkjbhfbvbvjhb@gmail.com", "bscdbcjhasbcjhbdscbhbsdhcbj@gmail.com",
                "egyfefsdvsfvvhjsd@gmail.com", "kfhejkfbsjkjsbhds@gmail.com",
                "qfvhgsvhgsduiohncdhcvhsdfvsfygusd@gmail.com"],
        delayed=[], bounced="118707422.15521266992174819.JavaMail.root@lvmail01"),
    # Return-Path <>; the first "message/delivery-status" part is really free text, the
    # second one holds the recipient; the returned message carries List-Unsubscribe,
    # which must not make the bounce "list mail".
    "mikel-mail/multipart_report_emails/multipart_report_multiple_status.eml": expect(
        is_bounce=True, failed=["u@ci.com"], delayed=[],
        bounced="4c2a146147ac8_61ff157c4ec1652df@s.h.c.mail"),
    "mikel-mail/multipart_report_emails/report_530.eml": expect(
        is_bounce=True, failed=["edwin@zzzzzzz.com"], delayed=[],
        bounced="200712232303.lBNN3jDq002941@mail12.rrrr.com.au"),  # text/rfc822-headers
    # Delay warnings (Action: delayed, Status 4.x.x): reports, not failures.
    "mikel-mail/multipart_report_emails/report_422.eml": expect(
        is_bounce=False, failed=[], delayed=["fraser@oooooooo.com.au"],
        bounced="15655788.13.1200472642578.JavaMail.Administrator@mail.ttttt.com.au"),
    "mikel-mail/mime_emails/raw_email_with_mimepart_without_content_type.eml": expect(
        is_bounce=False, failed=[], delayed=["larose.julie@courrier.uqam.ca"],
        bounced="89d7557c0610181510r6fa5ebd8n66a7deec71ade118@mail.gmail.com"),
}


@pytest.mark.parametrize("relative", sorted(CORPUS_REPORTS))
def test_corpus_delivery_reports(relative):
    raw = corpus_file(relative)
    want = CORPUS_REPORTS[relative]
    for variant in (raw, raw.replace(b"\r\n", b"\n"), raw.replace(b"\n", b"\r\n")
                    if b"\r\n" not in raw else raw):
        c = run(variant)
        assert c.is_bounce is want["is_bounce"], c
        assert c.failed_recipients == want["failed"], c
        assert c.delayed_recipients == want["delayed"], c
        assert c.bounced_message_id == want["bounced"], c
        # Either way: made by a machine, never answered, never a list.
        assert c.is_auto_submitted and c.suppress_autoreply and not c.is_list, c
        assert c.reasons


def test_corpus_has_all_multipart_report_files():
    folder = CORPUS / "mikel-mail" / "multipart_report_emails"
    if not folder.is_dir():
        pytest.skip("corpus not available")
    listed = {k.rsplit("/", 1)[1] for k in CORPUS_REPORTS if "multipart_report_emails" in k}
    assert {p.name for p in folder.glob("*.eml")} == listed


def test_corpus_bounce_reasons_are_readable():
    c = run(corpus_file("mikel-mail/multipart_report_emails/report_530.eml"))
    assert "delivery status report for edwin@zzzzzzz.com" in c.reasons
    assert "Auto-Submitted: auto-generated (failure)" in c.reasons
    c = run(corpus_file("mikel-mail/multipart_report_emails/multipart_report_multiple_status.eml"))
    assert "null Return-Path <>" in c.reasons


# =========================================================================== corpus: the rest

# Every other corpus message that is *not* ordinary person-to-person mail, and why.
# Each was checked by reading the file; anything not listed here must come out neutral.
CORPUS_LIST_MAIL = {
    "stalwart-mail-parser/thirdparty/014.eml": ["List-Id", "List-Unsubscribe", "Precedence"],
    "mikel-mail/error_emails/empty_in_reply_to.eml": ["List-Id"],  # "abuser@rg.com Mailing List"
    "mikel-mail/error_emails/bad_date_header.eml": ["Precedence"],  # spam, Precedence: junk
}


def test_corpus_ordinary_mail_is_not_classified():
    files = corpus_emails()
    if not files:
        pytest.skip("corpus not available")
    false_positives = []
    seen_lists = set()
    for path in files:
        key = str(path.relative_to(CORPUS))
        if key in CORPUS_REPORTS:
            continue
        raw = path.read_bytes()
        c = run(raw)
        if key in CORPUS_LIST_MAIL:
            seen_lists.add(key)
            assert c.is_list and c.suppress_autoreply, (key, c)
            assert not (c.is_bounce or c.is_auto_submitted), (key, c)
            for reason in CORPUS_LIST_MAIL[key]:
                assert any(r.startswith(reason) for r in c.reasons), (key, c.reasons)
            continue
        if not neutral(c) or c.reasons:
            false_positives.append((key, c.reasons))
    assert seen_lists == set(CORPUS_LIST_MAIL)
    # 243 corpus messages: 6 delivery reports, 3 list/bulk mails, 234 ordinary ones, of
    # which none may be flagged.
    assert false_positives == [], f"{len(false_positives)} false positives: {false_positives}"


@pytest.mark.parametrize("folder", ["stalwart-mail-parser/legacy", "talon", "redmine"])
def test_person_to_person_folders_are_all_neutral(folder):
    base = CORPUS / folder
    if not base.is_dir():
        pytest.skip("corpus not available")
    files = sorted(base.rglob("*.eml"))
    assert files
    flagged = [str(p.relative_to(CORPUS)) for p in files if not neutral(run(p.read_bytes()))]
    assert flagged == []


# =========================================================================== header rules


@pytest.mark.parametrize("header, reason", [
    ("Auto-Submitted: auto-replied", "Auto-Submitted: auto-replied"),
    ("Auto-Submitted: auto-generated", "Auto-Submitted: auto-generated"),
    ("Auto-Submitted: auto-notified; owner-email=\"x@example.org\"",
     "Auto-Submitted: auto-notified; owner-email=\"x@example.org\""),
    ("AUTO-SUBMITTED:   Auto-Replied (vacation)", "Auto-Submitted: Auto-Replied (vacation)"),
    ("X-Autoreply: yes", "X-Autoreply: yes"),
    ("X-Autorespond: Alice is away", "X-Autorespond: Alice is away"),
    ("Precedence: auto_reply", "Precedence: auto_reply"),
    ("X-Autogenerated: Reply", "X-Autogenerated: Reply"),
    ("X-AutoReply-From: alice@example.org", "X-Autoreply-From: alice@example.org"),
    ("X-FC-MachineGenerated: true", "X-FC-Machinegenerated: true"),
    ("X-POST-MessageClass: 9; Autoresponder", "X-POST-MessageClass: 9; Autoresponder"),
])
def test_auto_submitted_headers(header, reason):
    c = run(mail(header))
    assert c.is_auto_submitted and c.suppress_autoreply, c
    assert not c.is_bounce and not c.is_list
    assert reason in c.reasons, c.reasons


@pytest.mark.parametrize("header", [
    "Auto-Submitted: no", "Auto-Submitted: No (a person wrote this)", "X-Autoreply: no",
    "X-Autogenerated: Forward", "Precedence: normal", "X-Auto-Response-Suppress: DR, RN, NRN",
    "X-MS-Exchange-Inbox-Rules-Loop: support@shop.example",  # rule-forwarded customer mail
    "X-Loop: helpdesk@example.org", "Return-Path: <>",
])
def test_headers_that_do_not_make_mail_automatic(header):
    c = run(mail(header))
    assert neutral(c), c


@pytest.mark.parametrize("header, reason", [
    ("List-Id: Shop news <news.shop.example>", "List-Id: Shop news <news.shop.example>"),
    ("List-Unsubscribe: <mailto:unsub@shop.example>", "List-Unsubscribe"),
    ("Precedence: bulk", "Precedence: bulk"),
    ("Precedence: list", "Precedence: list"),
    ("Precedence: junk", "Precedence: junk"),
    ("X-Precedence: bulk", "X-Precedence: bulk"),
])
def test_list_and_bulk_headers(header, reason):
    c = run(mail(header))
    assert c.is_list and c.suppress_autoreply, c
    assert not c.is_auto_submitted and not c.is_bounce
    assert reason in c.reasons


@pytest.mark.parametrize("value", ["All", "OOF", "AutoReply", "DR, OOF, AutoReply", "oof"])
def test_auto_response_suppress(value):
    c = run(mail(f"X-Auto-Response-Suppress: {value}"))
    assert c.suppress_autoreply
    assert not (c.is_auto_submitted or c.is_bounce or c.is_list)  # still a conversation
    assert f"X-Auto-Response-Suppress: {value}" in c.reasons


# =========================================================================== subjects


@pytest.mark.parametrize("subject", [
    "Automatic reply: Where is my order?",
    "Autoreply: Where is my order?",
    "Auto-Reply: Where is my order?",
    "Out of Office: Where is my order?",
    "Out of Office AutoReply: Where is my order?",
    "Abwesenheitsnotiz: Wo ist meine Bestellung?",
    "Automatische Antwort: Wo ist meine Bestellung?",
    "Respuesta automática: ¿Dónde está mi pedido?",
    "Réponse automatique : Où est ma commande ?",
    "Risposta automatica: Dov'è il mio ordine?",
    "Automatisch antwoord: Waar is mijn bestelling?",
    "自動返信: 注文について",
])
def test_clear_out_of_office_subjects(subject):
    c = run(mail(f"Subject: {subject}"))
    assert c.is_auto_submitted and c.suppress_autoreply, c
    assert not c.is_bounce and not c.is_list
    assert any("automatic reply" in r for r in c.reasons)


@pytest.mark.parametrize("subject", [
    "I'm out of office next week - please send the invoice before",
    "Re: Automatic reply: Where is my order?",  # a person answering an auto-reply
    "AW: Abwesenheitsnotiz: Wo ist meine Bestellung?",
    "Vacation rental booking question",
    "Fw: Out of office",
    "Your auto-reply settings do not work",
    "Undeliverable parcel - please help",  # a customer, not a mailer daemon
])
def test_subjects_alone_are_not_enough(subject):
    assert neutral(run(mail(f"Subject: {subject}")))


@pytest.mark.parametrize("hint", [
    "X-Auto-Response-Suppress: All",
    "X-MS-Exchange-Inbox-Rules-Loop: alice@example.org",
    "Return-Path: <>",
    "X-Loop: alice@example.org",
    "Precedence: first-class",
])
def test_weak_subject_with_a_header_hint(hint):
    c = run(mail("Subject: I am out of the office until Monday", hint))
    assert c.is_auto_submitted and c.suppress_autoreply, c
    assert any("out of the office" in r for r in c.reasons)


# =========================================================================== bounces


def dsn(*, action="failed", status="5.1.1", returned=True, in_reply_to=None,
        return_path="<>", sender="Mail Delivery Subsystem <MAILER-DAEMON@mx.shop.example>",
        report_type="delivery-status", headers_only=False) -> bytes:
    parts = [
        ("--BOUND\r\nContent-Type: text/plain\r\n\r\nDelivery to the following recipient "
         "failed permanently:\r\n\r\n     bob@customer.example\r\n"),
        ("--BOUND\r\nContent-Type: message/delivery-status\r\n\r\n"
         "Reporting-MTA: dns; mx.shop.example\r\n\r\n"
         "Final-Recipient: rfc822; Bob@Customer.example\r\n"
         f"Action: {action}\r\nStatus: {status}\r\n"
         "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"),
    ]
    if returned:
        ctype = "text/rfc822-headers" if headers_only else "message/rfc822"
        parts.append(
            f"--BOUND\r\nContent-Type: {ctype}\r\n\r\n"
            "From: Support <support@shop.example>\r\nTo: bob@customer.example\r\n"
            "Subject: Re: Where is my order? [#12]\r\n"
            "Message-ID: <reply-12-1@shop.example>\r\n\r\nYour order has shipped.\r\n")
    head = [
        f"Return-Path: {return_path}" if return_path else None,
        f"From: {sender}",
        "To: support@shop.example",
        "Subject: Delivery Status Notification (Failure)",
        "Message-ID: <dsn-1@mx.shop.example>",
        f"In-Reply-To: <{in_reply_to}>" if in_reply_to else None,
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type={report_type}; boundary="BOUND"',
    ]
    return ("\r\n".join(h for h in head if h) + "\r\n\r\n" + "".join(parts)
            + "--BOUND--\r\n").encode()


def test_dsn_with_returned_message():
    c = run(dsn())
    assert c.is_bounce and c.is_auto_submitted and c.suppress_autoreply and not c.is_list
    assert c.failed_recipients == ["bob@customer.example"]
    assert c.bounced_message_id == "reply-12-1@shop.example"
    assert "delivery status report for bob@customer.example" in c.reasons


def test_dsn_with_returned_headers_only():
    c = run(dsn(headers_only=True))
    assert c.is_bounce and c.bounced_message_id == "reply-12-1@shop.example"


def test_dsn_status_5_without_action():
    c = run(dsn(action="", status="5.2.2"))
    assert c.is_bounce and c.failed_recipients == ["bob@customer.example"]


def test_dsn_without_returned_message_uses_in_reply_to():
    c = run(dsn(returned=False, in_reply_to="reply-12-1@shop.example"))
    assert c.is_bounce and c.bounced_message_id == "reply-12-1@shop.example"
    c = run(dsn(returned=False))
    assert c.is_bounce and c.bounced_message_id is None


def test_dsn_from_any_sender_without_null_path():
    c = run(dsn(return_path=None, sender="postmaster@customer.example"))
    assert c.is_bounce and c.failed_recipients == ["bob@customer.example"]


def test_delay_and_success_reports_are_not_bounces():
    c = run(dsn(action="delayed", status="4.4.7"))
    assert not c.is_bounce and c.is_auto_submitted and c.suppress_autoreply
    assert c.failed_recipients == [] and c.delayed_recipients == ["bob@customer.example"]
    assert c.bounced_message_id == "reply-12-1@shop.example"
    c = run(dsn(action="delivered", status="2.0.0"))
    assert not c.is_bounce and c.is_auto_submitted and c.failed_recipients == []
    assert "delivery status report: delivered: bob@customer.example" in c.reasons


def test_read_receipt():
    raw = (
        b"From: Bob <bob@customer.example>\r\nTo: support@shop.example\r\n"
        b"Subject: Read: Where is my order?\r\nMessage-ID: <mdn-1@customer.example>\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/report; "
        b'report-type=disposition-notification; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain\r\n\r\nYour message was read.\r\n"
        b"--B\r\nContent-Type: message/disposition-notification\r\n\r\n"
        b"Final-Recipient: rfc822; bob@customer.example\r\n"
        b"Original-Message-ID: <reply-12-1@shop.example>\r\n"
        b"Disposition: manual-action/MDN-sent-manually; displayed\r\n--B--\r\n"
    )
    c = run(raw)
    assert c.is_auto_submitted and c.suppress_autoreply and not c.is_bounce
    assert "read receipt (disposition notification)" in c.reasons


QMAIL_BOUNCE = (
    b"Return-Path: <>\r\n"
    b"From: MAILER-DAEMON@mx.customer.example\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: failure notice\r\n"
    b"Message-ID: <bounce-9@mx.customer.example>\r\n"
    b"\r\n"
    b"Hi. This is the qmail-send program at mx.customer.example.\r\n"
    b"I'm afraid I wasn't able to deliver your message to the following addresses.\r\n"
    b"This is a permanent error; I've given up. Sorry it didn't work out.\r\n"
    b"\r\n"
    b"<bob@customer.example>:\r\n"
    b"Sorry, no mailbox here by that name. (#5.1.1)\r\n"
    b"\r\n"
    b"--- Below this line is a copy of the message.\r\n"
    b"\r\n"
    b"Return-Path: <support@shop.example>\r\n"
    b"From: Support <support@shop.example>\r\n"
    b"To: <bob@customer.example>\r\n"
    b"Message-ID: <reply-12-2@shop.example>\r\n"
    b"Subject: Re: Where is my order?\r\n"
    b"\r\n"
    b"Write to carol@shop.example for refunds.\r\n"
)

EXIM_BOUNCE = (
    b"Return-path: <>\r\n"
    b"From: Mail Delivery System <Mailer-Daemon@mx.customer.example>\r\n"
    b"To: support@shop.example\r\n"
    b"Subject: Mail delivery failed: returning message to sender\r\n"
    b"Message-Id: <E1abc-0001@mx.customer.example>\r\n"
    b"X-Failed-Recipients: bob@customer.example, Eve@Customer.example\r\n"
    b"Auto-Submitted: auto-replied\r\n"
    b"\r\n"
    b"This message was created automatically by mail delivery software.\r\n"
    b"\r\n"
    b"A message that you sent could not be delivered to one or more of its\r\n"
    b"recipients. This is a permanent error. The following address(es) failed:\r\n"
    b"\r\n"
    b"  bob@customer.example\r\n"
    b"    SMTP error from remote mail server after RCPT TO:<bob@customer.example>:\r\n"
    b"    550 5.1.1 User unknown\r\n"
    b"  eve@customer.example\r\n"
    b"    Unrouteable address\r\n"
    b"\r\n"
    b"------ This is a copy of the message, including all the headers. ------\r\n"
    b"\r\n"
    b"Message-ID: <reply-12-3@shop.example>\r\n"
    b"From: support@shop.example\r\n"
    b"Subject: Re: Where is my order?\r\n"
    b"\r\n"
    b"Thanks!\r\n"
)


def test_classic_qmail_bounce():
    c = run(QMAIL_BOUNCE)
    assert c.is_bounce and c.is_auto_submitted and c.suppress_autoreply
    assert c.failed_recipients == ["bob@customer.example"]
    assert c.bounced_message_id == "reply-12-2@shop.example"
    assert any(r.startswith("bounce from mailer-daemon@mx.customer.example") for r in c.reasons)


def test_classic_exim_bounce_with_x_failed_recipients():
    c = run(EXIM_BOUNCE)
    assert c.is_bounce
    assert c.failed_recipients == ["bob@customer.example", "eve@customer.example"]
    assert c.bounced_message_id == "reply-12-3@shop.example"
    assert "X-Failed-Recipients: bob@customer.example, eve@customer.example" in c.reasons


def test_classic_bounce_body_addresses_without_x_failed_recipients():
    raw = EXIM_BOUNCE.replace(
        b"X-Failed-Recipients: bob@customer.example, Eve@Customer.example\r\n", b"")
    c = run(raw)
    assert c.is_bounce
    assert c.failed_recipients == ["bob@customer.example", "eve@customer.example"]


def test_classic_delay_warning_is_not_a_bounce():
    raw = (
        b"Return-Path: <>\r\nFrom: Mail Delivery Subsystem <MAILER-DAEMON@mx.shop.example>\r\n"
        b"To: support@shop.example\r\n"
        b"Subject: Warning: could not send message for past 4 hours\r\n\r\n"
        b"    **      THIS IS A WARNING MESSAGE ONLY      **\r\n\r\n"
        b"<bob@customer.example>... Deferred: Connection timed out\r\n"
        b"Will keep trying until message is 5 days old\r\n"
    )
    c = run(raw)
    assert not c.is_bounce and c.is_auto_submitted and c.suppress_autoreply
    assert c.delayed_recipients == ["bob@customer.example"]


def test_a_person_at_postmaster_writing_normally_is_not_a_bounce():
    c = run(mail("From: Bob <postmaster@customer.example>",
                 "Subject: Please update our invoice address",
                 body="Hello, our new address is 1 Main St.\r\n"))
    assert neutral(c), c


def test_forwarded_bounce_is_a_conversation():
    """A customer forwarding us a bounce they got (as an attachment) is a person writing."""
    inner = dsn().decode()
    raw = (
        "From: Alice Customer <alice@example.org>\r\nTo: support@shop.example\r\n"
        "Subject: Fw: your mails bounce\r\nMessage-ID: <fw-1@example.org>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="OUT"\r\n\r\n'
        "--OUT\r\nContent-Type: text/plain\r\n\r\nLook at this, what is wrong?\r\n"
        "--OUT\r\nContent-Type: message/rfc822\r\n\r\n" + inner + "\r\n--OUT--\r\n"
    ).encode()
    c = run(raw)
    assert neutral(c), c


def test_multipart_mixed_bounce_with_attached_original():
    """Some servers send a non-report multipart/mixed bounce with the message attached."""
    raw = (
        b"Return-Path: <>\r\nFrom: postmaster@customer.example\r\nTo: support@shop.example\r\n"
        b"Subject: Undeliverable: Re: Where is my order?\r\nMessage-ID: <ndr-1@customer.example>\r\n"
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="N"\r\n\r\n'
        b"--N\r\nContent-Type: text/plain\r\n\r\nDelivery has failed to these recipients:\r\n\r\n"
        b"    bob@customer.example\r\n\r\n"
        b"--N\r\nContent-Type: message/rfc822\r\n\r\n"
        b"From: support@shop.example\r\nTo: bob@customer.example\r\n"
        b"Message-ID: <reply-12-4@shop.example>\r\nSubject: Re: Where is my order?\r\n\r\nHi\r\n"
        b"--N--\r\n"
    )
    c = run(raw)
    assert c.is_bounce and c.failed_recipients == ["bob@customer.example"]
    assert c.bounced_message_id == "reply-12-4@shop.example"


# =========================================================================== never raises


@pytest.mark.parametrize("raw", [
    b"", b"\x00\xff\xfe", b"From: \"broken <\r\nContent-Type: multipart/report; boundary=\"\r\n\r\n",
    (b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\n"
     b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n\r\n"
     b"!!!not base64\r\n--x\r\nContent-Type: message/rfc822\r\n\r\n\xff\xfe\r\n"),
    b"Content-Type: multipart/report; boundary=a\r\n\r\n" + b"--a\r\nContent-Type: multipart/mixed;"
    b" boundary=a\r\n\r\n" * 300,
    b"Return-Path: <>\r\nFrom: MAILER-DAEMON\r\nSubject: =?utf-8?b?broken\r\n\r\n" + b"<x@y>:\r\n" * 5000,
])
def test_never_raises_on_garbage(raw):
    c = run(raw)
    assert isinstance(c, Classification)
    assert c.failed_recipients == [] or all("@" in a for a in c.failed_recipients)


def test_neutral_result_on_internal_error(monkeypatch):
    def boom(raw, parsed):
        raise RuntimeError("bug")

    monkeypatch.setattr(classify_module, "_classify", boom)
    c = classify(b"Subject: x\r\n\r\n", ParsedMessage())
    assert c == Classification()


def test_works_with_a_bare_parsed_message():
    assert neutral(classify(b"", ParsedMessage()))
    c = classify(b"", ParsedMessage(headers={"auto-submitted": "auto-replied"}))
    assert c.is_auto_submitted

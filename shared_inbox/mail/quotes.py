"""Split an email reply into what the sender newly wrote, the quoted history and the signature.

This is a *display* split only: the original body is always stored elsewhere, so the rules
may be heuristic.  They never lose text: every line that is not in ``ReplySplit.reply`` is in
``ReplySplit.quoted`` (signature lines are also copied to ``ReplySplit.signature``).

Approach (line classification, the idea behind discourse's email_reply_trimmer):

1. Every line gets one class letter: ``e`` empty (also a bare ``>``), ``d`` delimiter
   (``-- ``, ``_____``, ``-----``), ``s`` mobile signature ("Sent from my iPhone"), ``b``
   attribution or embedded-email marker ("On ... wrote:" in many languages, possibly wrapped
   over several lines or itself quoted, "-----Original Message-----", "Begin forwarded
   message:"), ``h`` a line of an Outlook style header block ("From: / Sent: / To: /
   Subject:" in many languages), ``q`` quoted (``>``, ``|``, ``C>``), ``t`` text.  Lines inside
   a ````` fence are always text.
2. Procedural rules over the class sequence decide what is kept (see :func:`_decide`): cut at
   the first delimiter, drop mobile signatures, recognise bottom posting, cut at an
   attribution that starts the quoted or forwarded tail, cut at an Outlook header block, drop
   a quote that ends the message.  Quotes answered inline (text after the quote) are kept.

Every regular expression is anchored or starts with a literal, header detection only looks at
lines of at most ``_MAX_HEADER_LINE`` characters and windows of at most
``_MAX_HEADER_LINES`` lines, and the rules are single passes, so the split is linear in the
size of the input.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ReplySplit", "split_reply"]


@dataclass
class ReplySplit:
    """Result of :func:`split_reply`."""

    reply: str
    """What the sender newly wrote (signature removed), without leading/trailing blank lines."""
    quoted: str
    """Everything removed (attribution, quoted lines, forwarded history, signature), or ``""``."""
    signature: str
    """The signature block, if one was detected, else ``""``."""


# ---------------------------------------------------------------------------------------------
# Line classes

EMPTY = "e"
DELIMITER = "d"
SIGNATURE = "s"
QUOTE_HEADER = "b"
EMAIL_HEADER = "h"
QUOTE = "q"
TEXT = "t"

#: Lines longer than this are prose: never an attribution or a header.
_MAX_HEADER_LINE = 400
#: A wrapped attribution ("On ... <\nfoo@bar> wrote:") spans at most this many lines.
_MAX_HEADER_LINES = 5
#: Text after "attribution + quote" with fewer lines than this is a signature, not an answer.
_MAX_SIGNATURE_TEXT_LINES = 7
#: A signature block after a delimiter has at most this many non-empty lines.
_MAX_SIGNATURE_BLOCK_LINES = 10

_INVISIBLE = "\u200b\u200c\u200d\u200e\u200f\u2060\ufeff"
_INVISIBLE_TABLE = {ord(ch): None for ch in _INVISIBLE}

# --- delimiters --------------------------------------------------------------------------------
# "-- " (RFC 3676), "--", "______", "------", "=====", "~~~~", "***", a lone em/en dash.
_DELIMITER_RE = re.compile(r"[ \t]*(?:[-_=~\u2014\u2013]{2,}|\*{3,}|[\u2014\u2013])[ \t]*")

# --- code fences -------------------------------------------------------------------------------
_FENCE_RE = re.compile(r"[ \t]{0,3}(?:```|~~~)")

# --- quoted lines ------------------------------------------------------------------------------
# "> text", ">text", "  > text", supercite "C>" / "Richard>", and "| text" (a markdown table
# row, which also ends with "|", is not a quote).
_QUOTE_RE = re.compile(r"[ \t]*(?:>|[A-Za-z]{1,10}>(?=[ \t]|$))")
_PIPE_QUOTE_RE = re.compile(r"[ \t]*\|")
_QUOTE_PREFIX_RE = re.compile(r"[ \t]*(?:[A-Za-z]{1,10}>|>|\|)[ \t>]*")
_EMPTY_QUOTE_RE = re.compile(r"[\s>]*")

# --- mobile and app signatures -----------------------------------------------------------------
# Matched at the start of the lower-cased line.
_MOBILE_SIGNATURE_RE = re.compile("|".join((
    # "Sent from my iPhone", "Sent via mobile", "Sent with Airmail", "(sent from a phone)",
    # "<<sent by galaxy>>", "Sent from [mail](...) for windows 10", "Sent using ..."
    r"[(<\[ \t]*sent (?:from|via|with|using|by|on)\b",
    r"from my (?:i?phone|ipad|ipod|android|mobile|cell|smartphone|blackberry|galaxy|"
    r"samsung|tablet|htc|nokia|pixel|device)\b",
    r"\S+(?: \S+)? from (?:my )?(?:mobile|phone|i?phone|ipad|android)\.?[ \t]*$",
    r"get \[?outlook for (?:ios|android)",
    # German
    r"von meinem .{0,60}gesendet",
    r"gesendet (?:von|mit|vom) ",
    r"diese nachricht wurde von meinem .{0,80}gesendet",
    # French
    r"envoy[ée] (?:de|depuis|avec|à partir de|a partir de|via) ",
    # Dutch
    r"(?:verzonden|verstuurd) (?:met|vanaf|van|via) ",
    # Spanish / Portuguese / Italian
    r"enviad[oa] (?:desde|do|da|con|com|a trav[ée]s de|pelo|pela) ",
    r"inviato (?:da|dal|dalla|con) ",
    # Swedish / Danish / Norwegian
    r"(?:skickat|skickad|sendt) (?:från|fra|med|via) ",
    # Polish / Czech
    r"wys[łl]ane (?:z|ze|przez) ",
    r"odesl[áa]no (?:z|ze) ",
    # Russian
    r"отправлено (?:с|со|из) ",
    # Finnish
    r"l[äa]hetetty (?:iphonesta|androidista|mobiilista|puhelimesta)",
    # Chinese / Japanese
    r"(?:发自|發自|来自|來自)我的",
    r"(?:從|从)我的.{0,40}(?:傳送|发送)",
    r".{0,40}から送信[ \t]*$",
)))
_MOBILE_SIGNATURE_MAX = 120

# --- attribution lines ("On ... wrote:") -------------------------------------------------------
# One character before "@" and a dotted domain after it: linear even on long tokens.
_EMAIL_RE = re.compile(r"[^\s<>()\"'@,;:]@[^\s<>()\"'@,;:]+\.\w")
_TIME_RE = re.compile(r"\d{1,2}[:.h]\d{2}")
_NUMERIC_DATE_RE = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}")
_YEAR_RE = re.compile(r"(?<!\d)(?:19|20)\d\d(?!\d)")
_DIGIT_RE = re.compile(r"\d")

# Words that open an attribution, followed soon by a digit (a date): "On Mon, 1 Feb",
# "Le 4 janv.", "Am 03.02.2016", "El jueves, 21 de", "Il 26 marzo", "Op 2 feb.", "Em seg., 1",
# "Den 5 juni", "Dnia 14 lip", "W dniu", "Dne", "At 6/16/2016", "Vào 20:45", "понедельник, 6",
# "在 2016年".
_OPENER_RE = re.compile(
    r"(?:on|le|am|el|il(?: giorno)?|op|em|den|dnia|w dniu|dne|at|på|vào|в|во|"
    r"понедельник|вторник|среда|четверг|пятница|суббота|воскресенье|在|於|于)"
    r"[\s,.]{1,3}.{0,40}?\d"
)

# Attribution verbs ("wrote") in many languages, lower case.
_WROTE_VERBS = (
    "wrote", "writes", "has written", "schrieb", "schreibt", "geschrieben", "écrit", "ecrit",
    "escribió", "escribio", "escreveu", "ha scritto", "scrisse", "geschreven", "schreef", "skrev",
    "skriver", "napisał", "napisal", "napisała", "pisze", "написал", "написала", "пишет",
    "kirjoitti", "napsal", "napsala", "írta", "irta", "yazdı", "a scris", "έγραψε", "написав",
    "пише", "menulis", "đã viết", "写道", "寫道", "書きました", "のメール", "작성",
)
_WROTE_RE = re.compile("|".join(re.escape(v) for v in _WROTE_VERBS))
# "napisał(a)", "написал(а)", "napsal(a)": a gender suffix after the verb.
_GENDER_SUFFIX_RE = re.compile(r" ?\(\w{1,4}\)$")
# "<name> <email> schrieb am <date>:", "X wrote on <date>:" (verb followed by a date).
_WROTE_ON_DATE_RE = re.compile(
    r"(?:wrote|schrieb|schreef|skrev|kirjoitti|écrit|escribió|escreveu)"
    r" +(?:am|op|on|le|el|den|em|at|the) [^:：]{0,40}\d"
)
# "John Smith wrote:", "On Monday, John Smith wrote:", "Jean Dupont a écrit :" -- trusted only
# right above a quote.
_NAME_WROTE_RE = re.compile(
    r"(?:[Oo]n [^,]{1,30}, )?(?:[A-Z\u00c0-\u024f\u0400-\u042f][\w.'-]*[ \t]+){0,3}"
    r"[A-Z\u00c0-\u024f\u0400-\u042f][\w.'-]*[ \t]+"
    r"(?:wrote|writes|schrieb|a écrit|escribió|escreveu|ha scritto|schreef|skrev|"
    r"napisał(?:\(a\))?|написал(?:\(а\)|а)?|kirjoitti|napsal(?:\(a\))?)[ \t]*[:：]"
)
# "Quoting John <j@x.com>:", "Zitat von ...:", "Citando ...:".
_QUOTING_RE = re.compile(r"(?:quoting|zitat von|citando|citation de|cytuj[ąa]c) .{1,120}[:：]$")

# Gmail's date-first attribution: "2016-10-24 15:36 GMT+02:00 Foo <foo@bar>:",
# "2013/7/20 sam via Discourse <info@discourse.org>", "2016年12月12日(月) 20:45 X <x@y>:".
_DATE_FIRST_RE = re.compile(
    r"(?:\d{4} ?[-/.年] ?\d{1,2} ?[-/.月] ?\d{1,2}日?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})"
)
# What follows the date (matched on the lower-cased line or wrapped lines): an optional
# weekday and time, then either a GMT/UTC offset and a name, or a name and an address.
_TIME_PART = (
    r" *(?:\(\w{1,3}\) *)?(?:\d{1,2}[:.]\d{2}(?::\d{2})? *(?:[ap]\.?m\.? *)?)?"
)
_ZONE_NAME_RE = re.compile(
    _TIME_PART + r"(?:gmt|utc) *[-+]\d{2}:?\d{2} +[^\s.!?:;,][^.!?;:=]{0,60}"
)
_NAME_ADDRESS_RE = re.compile(
    _TIME_PART + r"(?:(?:gmt|utc) *[-+]\d{2}:?\d{2} *)?[ 、,]*[^<>()=:;@\[\]{}|]{0,80}"
    r"[<(] *[^<>()\s]+@[^<>()\s]+ *[>)] *(?:のメール|のメッセージ)? *[:：]?"
)

# Embedded / forwarded email markers.
_MARKER_WORDS = (
    r"original message|original|forwarded message|forwarded|message transf[ée]r[ée]|"
    r"message d'origine|ursprüngliche nachricht|weitergeleitete nachricht|mensaje original|"
    r"mensaje reenviado|messaggio originale|messaggio inoltrato|oorspronkelijk bericht|"
    r"origineel bericht|doorgestuurd bericht|ursprungligt meddelande|vidarebefordrat meddelande|"
    r"oprindelig meddelelse|videresendt meddelelse|opprinnelig melding|wiadomo[śs][ćc] oryginalna|"
    r"przekazana wiadomo[śs][ćc]|исходное сообщение|пересылаемое сообщение|"
    r"пересланное сообщение|mensagem original|mensagem encaminhada|alkuperäinen viesti|"
    r"välitetty viesti|původní zpráva|přeposlaná zpráva|eredeti üzenet|"
    r"原始邮件|原始郵件|转发的邮件|轉寄的郵件|元のメッセージ|転送されたメッセージ|원본 메시지|"
    r"reply message|original e-?mail"
)
# "-----Original Message-----", "---------- Forwarded message ---------", "-------- 原始邮件 ---".
_DASHED_MARKER_RE = re.compile(
    r"[-=_* \t]{2,}(?:" + _MARKER_WORDS + r")\b[^-=]{0,30}[-=_* \t]{2,}"
)
_MARKER_LINE_RE = re.compile(
    r"(?:begin forwarded message|anfang der weitergeleiteten (?:nachricht|e-mail)|"
    r"d[ée]but du message r[ée]exp[ée]di[ée]|inicio del mensaje reenviado|"
    r"inizio messaggio inoltrato|begin doorgestuurd bericht|vidarebefordrat brev|"
    r"in[ií]cio da mensagem reencaminhada|pocz[ąa]tek przekazywanej wiadomo[śs]ci|"
    r"начало переадресованного сообщения|forwarded message|original message) ?[:：]?"
)

# --- Outlook style header blocks ("From: / Sent: / To: / Subject:") ----------------------------
_HEADER_LABELS = {
    "from": (
        "from", "von", "de", "da", "van", "från", "fra", "od", "от", "发件人", "發件人",
        "寄件者", "寄件人", "差出人", "lähettäjä", "feladó", "kimden", "expéditeur", "remitente",
        "보낸 사람",
    ),
    "date": (
        "sent", "date", "gesendet", "datum", "envoyé", "envoyé le", "enviado", "enviada",
        "enviado el", "fecha", "data", "inviato", "verzonden", "verstuurd", "skickat", "sendt",
        "wysłano", "wysłane", "отправлено", "дата", "发送时间", "發送時間", "傳送時間", "日期",
        "送信日時", "日付", "päivämäärä", "lähetetty", "elküldve", "dátum", "tarih",
        "odesláno", "sent on", "보낸 날짜", "enviada em", "enviado em", "寄件日期", "gönderildi",
        "gönderilen",
    ),
    "to": (
        "to", "an", "à", "a", "para", "aan", "till", "til", "do", "кому", "收件人", "收件者",
        "宛先", "vastaanottaja", "címzett", "kime", "komu", "destinataire", "받는 사람",
    ),
    "cc": ("cc", "bcc", "kopie", "cópia", "copia", "抄送", "副本", "dw", "копия", "kopio", "kopia"),
    "subject": (
        "subject", "betreff", "objet", "asunto", "oggetto", "onderwerp", "ämne", "emne",
        "temat", "тема", "主题", "主旨", "件名", "aihe", "tárgy", "konu", "assunto", "předmět",
        "제목",
    ),
    "reply-to": (
        "reply-to", "reply to", "antwort an", "risposta", "rispondi a", "responder a",
        "répondre à", "svara till", "odpowiedź do", "ответить",
    ),
}
_LABEL_KIND = {label: kind for kind, labels in _HEADER_LABELS.items() for label in labels}
# "From: x", "*From:* x", "De : x", "发件人：x".
_HEADER_RE = re.compile(
    r"[ \t]*\*{0,2}(?P<label>"
    + "|".join(sorted((re.escape(k) for k in _LABEL_KIND), key=len, reverse=True))
    + r")\*{0,2}[ \t]*[:：]\*{0,2}(?:[ \t]|$)",
    re.IGNORECASE,
)


# ---------------------------------------------------------------------------------------------
# Line predicates


def _clean(line: str) -> str:
    """The line without invisible characters and surrounding whitespace."""
    if not line.isascii():
        line = line.translate(_INVISIBLE_TABLE)
    return line.strip()


def _is_blank(clean: str) -> bool:
    """Empty, or a quote marker with nothing quoted (">", "> >")."""
    return not clean or _EMPTY_QUOTE_RE.fullmatch(clean) is not None


def _is_quote(line: str) -> bool:
    if _QUOTE_RE.match(line):
        return True
    if _PIPE_QUOTE_RE.match(line):
        body = line.strip()
        return body == "|" or not body.endswith("|")
    return False


def _unquote(line: str) -> str:
    """The line's text without its quote prefix (any depth)."""
    m = _QUOTE_PREFIX_RE.match(line)
    return line[m.end():] if m else line


def _is_mobile_signature(low: str) -> bool:
    return len(low) <= _MOBILE_SIGNATURE_MAX and _MOBILE_SIGNATURE_RE.match(low) is not None


def _ends_with_colon(text: str) -> bool:
    return text.rstrip().endswith((":", "："))


def _has_email(text: str) -> bool:
    return "@" in text and _EMAIL_RE.search(text) is not None


def _has_date(text: str) -> bool:
    return bool(_TIME_RE.search(text) or _NUMERIC_DATE_RE.search(text) or _YEAR_RE.search(text))


class _Line:
    """What attribution detection needs to know about one (unquoted, stripped) line."""

    __slots__ = ("text", "low", "colon", "verb_final", "digit", "email", "date", "comma",
                 "opener", "verb", "wrote_on_date", "date_first")

    def __init__(self, text: str):
        self.text = text
        low = self.low = text.lower()
        self.colon = low.endswith((":", "："))
        bare = low.rstrip(" \t:：-=_*")
        if bare.endswith(")"):
            bare = _GENDER_SUFFIX_RE.sub("", bare)
        self.verb_final = bare.endswith(_WROTE_VERBS)
        self.digit = _DIGIT_RE.search(low) is not None
        self.email = _has_email(low)
        # The rest is only needed on lines that can be part of an attribution at all: every
        # attribution has a date or an address, or ends with a colon or a verb.
        if self.digit or self.email or self.colon or self.verb_final:
            self.date = self.digit and _has_date(low)
            self.comma = "," in low or "，" in low or "、" in low
            self.opener = self.digit and _OPENER_RE.match(low.lstrip(" \t-=_*")) is not None
            self.verb = self.verb_final or _WROTE_RE.search(low) is not None
            self.wrote_on_date = (
                self.verb and self.digit and _WROTE_ON_DATE_RE.search(low) is not None
            )
            self.date_first = (
                self.digit and _DATE_FIRST_RE.match(low.lstrip(" \t-=_*")) is not None
            )
        else:
            self.date = self.comma = self.opener = self.verb = False
            self.wrote_on_date = self.date_first = False


def _is_marker(line: _Line) -> bool:
    """A one-line attribution that needs no date: markers, "Quoting X:", Gmail's date + zone."""
    low = line.low
    core = low.strip(" \t-=_*")
    if not core:
        return False
    if _DASHED_MARKER_RE.fullmatch(low) or _MARKER_LINE_RE.fullmatch(core):
        return True
    if line.colon and _QUOTING_RE.match(core):
        return True
    if line.date_first:
        m = _DATE_FIRST_RE.match(core)
        if m and _ZONE_NAME_RE.fullmatch(core[m.end():]):
            return True
    return False


def _is_attribution(window: list[_Line]) -> bool:
    """Is this window of consecutive lines (top to bottom) one attribution line?"""
    first, last = window[0], window[-1]
    if len(window) == 1 and _is_marker(first):
        return True
    email = any(line.email for line in window)
    if last.verb_final:
        # "... wrote:" needs an address, an opener ("On <date>"), or a comma-separated date
        # ("понедельник, 6 октября 2014 г. пользователь X написал:"), so that "This is what my
        # colleague wrote:" or "Yesterday at 5:00 I wrote:" stay text.
        return first.opener or email or (
            any(line.comma for line in window) and any(line.date for line in window)
        )
    if last.colon:
        # "<name> <email> schrieb am <date>:", "X wrote on 5/5/2016:"
        if any(line.wrote_on_date for line in window):
            return True
        # "Am 03.02.2016 3:35 nachm. schrieb Max <max@example.org>:", "Den ... skrev X:"
        if first.opener and any(line.verb for line in window):
            return True
    if first.date_first and email:
        # Gmail: "2016-10-24 15:36 GMT+02:00 Foo <foo@bar.com>:", "2013/7/20 X <x@y.org>"
        core = " ".join(line.low for line in window).strip(" \t-=_*")
        m = _DATE_FIRST_RE.match(core)
        return m is not None and _NAME_ADDRESS_RE.fullmatch(core[m.end():]) is not None
    return False


# ---------------------------------------------------------------------------------------------
# Classification


def _code_lines(lines: list[str]) -> list[bool]:
    """Lines inside a closed ``` (or ~~~) fence, fences included."""
    in_code = [False] * len(lines)
    open_at = None
    for i, line in enumerate(lines):
        if _FENCE_RE.match(line):
            if open_at is None:
                open_at = i
            else:
                for k in range(open_at, i + 1):
                    in_code[k] = True
                open_at = None
    return in_code


def _find_attributions(unquoted: list[str], quoted: list[bool]) -> list[bool]:
    """Mark the lines that belong to an attribution or an embedded-email marker.

    ``unquoted[i]`` is the line without quote prefix, or ``""`` when the line cannot be part
    of one; ``quoted[i]`` says whether it had a prefix.  A wrapped attribution is found as a
    window of up to ``_MAX_HEADER_LINES`` consecutive lines that ends at the current line
    (which must end with a colon).  A window that starts with an opener or a date ("On Mon,
    ...", "Le 4 janv. ...", "02.04.2012 ...") wins; otherwise the single line or the shortest
    window, so that a text line just above "Foo <foo@bar> wrote:" is kept.
    """
    n = len(unquoted)
    marked = [False] * n
    info: list[_Line | None] = [_Line(text) if text else None for text in unquoted]
    for j in range(n):
        end = info[j]
        if end is None:
            continue
        single = _is_attribution([end])
        strong = weak = None
        if end.colon:
            # A wrapped attribution stays at one quote level, except for a last fragment
            # without words: "...<noreply@example.com\n>:" looks like a quoted ":".
            any_level = not any(ch.isalnum() for ch in end.text)
            window = [end]
            total = len(end.text)
            for start in range(j - 1, max(-1, j - _MAX_HEADER_LINES), -1):
                piece = info[start]
                if piece is None or (quoted[start] != quoted[j] and not any_level):
                    break
                total += len(piece.text) + 1
                if total > _MAX_HEADER_LINE:
                    break
                window.insert(0, piece)
                strong_start = piece.opener or piece.date_first
                if not strong_start and (single or weak is not None):
                    continue
                if _is_attribution(window):
                    if strong_start:
                        strong = start
                        break
                    weak = start
        start = strong if strong is not None else (j if single else weak)
        if start is not None:
            for k in range(start, j + 1):
                marked[k] = True
    return marked


def _mark_header_blocks(cleaned: list[str], classes: list[str]) -> None:
    """Turn Outlook style header blocks into ``h`` (in place).

    A block is a run of "Label: value" lines; a value may wrap onto up to two following lines
    and a single blank line may separate two labels.  It counts only with at least three labels
    of three different kinds, one of them From or Subject, so that "Date: Monday" or "To: the
    office" in a reply stay text.
    """
    n = len(cleaned)
    kind: list[str | None] = [None] * n
    for i in range(n):
        if classes[i] == TEXT and len(cleaned[i]) <= _MAX_HEADER_LINE:
            m = _HEADER_RE.match(cleaned[i])
            if m:
                kind[i] = _LABEL_KIND[m.group("label").lower()]
    i = 0
    while i < n:
        if kind[i] is None:
            i += 1
            continue
        start = last = i
        kinds = {kind[i]}
        labels = 1
        wrapped = blanks = 0
        j = i + 1
        while j < n:
            if kind[j] is not None:
                kinds.add(kind[j])
                labels += 1
                last = j
                wrapped = blanks = 0
            elif classes[j] == EMPTY and blanks == 0 and wrapped == 0:
                blanks = 1
            elif classes[j] == TEXT and blanks == 0 and wrapped < 2:
                wrapped += 1
            else:
                break
            j += 1
        if labels >= 3 and len(kinds) >= 3 and kinds & {"from", "subject"}:
            for k in range(start, last + 1):
                if classes[k] == TEXT:
                    classes[k] = EMAIL_HEADER
        i = last + 1


def _classify(lines: list[str]) -> list[str]:
    """One class letter per line (see the module docstring)."""
    n = len(lines)
    cleaned = [_clean(line) for line in lines]
    in_code = _code_lines(lines)
    classes = [TEXT] * n
    unquoted = [""] * n
    for i in range(n):
        c = cleaned[i]
        if in_code[i]:
            continue
        if _is_blank(c):
            classes[i] = EMPTY
        elif _DELIMITER_RE.fullmatch(lines[i]):
            classes[i] = DELIMITER
        elif _is_quote(lines[i]):
            classes[i] = QUOTE
        elif _is_mobile_signature(c.lower()):
            classes[i] = SIGNATURE
        if classes[i] in (TEXT, QUOTE) and len(c) <= _MAX_HEADER_LINE:
            unquoted[i] = _unquote(c).strip()

    quoted = [c == QUOTE for c in classes]
    for i, is_attribution in enumerate(_find_attributions(unquoted, quoted)):
        if is_attribution:
            classes[i] = QUOTE_HEADER

    _mark_header_blocks(cleaned, classes)

    # Attributions that only the quote below them gives away: a text line ending with ":" that
    # names an address (or a date and a time) -- a language not listed above --, or a bare
    # "John Smith wrote:" / "On Monday, John wrote:".
    for i in range(n):
        line = cleaned[i]
        if classes[i] != TEXT or len(line) > _MAX_HEADER_LINE or not _ends_with_colon(line):
            continue
        k = i + 1
        while k < n and k <= i + 2 and classes[k] == EMPTY:
            k += 1
        if k < n and classes[k] == QUOTE and (
            _has_email(line)
            or (_TIME_RE.search(line) and _NUMERIC_DATE_RE.search(line))
            or _NAME_WROTE_RE.fullmatch(line)
        ):
            classes[i] = QUOTE_HEADER
    return classes


# ---------------------------------------------------------------------------------------------
# Rules over the class sequence


class _Lines:
    """The lines still kept: their indexes into the message and their classes."""

    def __init__(self, classes: list[str]):
        self.idx = list(range(len(classes)))
        self.pat = list(classes)

    def cut(self, position: int) -> None:
        """Keep only the lines before ``position``."""
        del self.idx[position:]
        del self.pat[position:]

    def drop_positions(self, positions: set[int]) -> None:
        """Remove the lines at these positions (indexes into the kept lines)."""
        self.idx = [i for k, i in enumerate(self.idx) if k not in positions]
        self.pat = [c for k, c in enumerate(self.pat) if k not in positions]

    def keep_from(self, position: int) -> None:
        """Keep only the lines from ``position`` on."""
        del self.idx[:position]
        del self.pat[:position]

    def drop(self, cls: str) -> list[int]:
        """Remove every line of class ``cls``; return their message indexes."""
        dropped = [i for i, c in zip(self.idx, self.pat) if c == cls]
        if dropped:
            kept = [(i, c) for i, c in zip(self.idx, self.pat) if c != cls]
            self.idx = [i for i, _ in kept]
            self.pat = [c for _, c in kept]
        return dropped

    def first_non_empty(self, start: int = 0) -> int:
        for k in range(start, len(self.pat)):
            if self.pat[k] != EMPTY:
                return k
        return -1

    def prev_non_empty(self, k: int) -> int:
        k -= 1
        while k >= 0 and self.pat[k] == EMPTY:
            k -= 1
        return k


def _decide(classes: list[str]) -> tuple[list[int], list[int], int | None]:
    """Return (kept line indexes, mobile signature line indexes, index of the cut delimiter)."""
    lines = _Lines(classes)
    pat = lines.pat

    # 1. Everything from the first delimiter on goes ("-- " signature, "_____" Outlook rule).
    #    A rule before any content (a forward starting with "_____\nFrom: ...") only goes itself.
    delimiter_at = None
    leading = set()
    k = lines.first_non_empty()
    while k >= 0 and pat[k] == DELIMITER:
        leading.add(k)
        k = lines.first_non_empty(k + 1)
    if leading:
        lines.drop_positions(leading)
        pat = lines.pat
    if DELIMITER in pat:
        cut = pat.index(DELIMITER)
        delimiter_at = lines.idx[cut]
        lines.cut(cut)

    # 2. Mobile signatures go wherever they are.
    signature = lines.drop(SIGNATURE)
    pat = lines.pat

    # 3. Bottom posting: the message starts with an attribution and its quote, and the answer
    #    follows at the end ("On ... wrote:\n> ...\n\nMy answer").
    first = lines.first_non_empty()
    starts_with_attribution = first >= 0 and pat[first] == QUOTE_HEADER
    if starts_with_attribution and TEXT in pat:
        first_text = pat.index(TEXT)
        if first_text > first + 1 and all(c in (TEXT, EMPTY) for c in pat[first_text:]):
            lines.keep_from(first_text)
            pat = lines.pat
            first = lines.first_non_empty()
            starts_with_attribution = False

    # 4. An attribution right after text and never followed by a quoted line: the rest is an
    #    earlier message pasted unquoted (Outlook, Gmail forward).  A message that starts with
    #    an attribution and quotes nothing keeps its text (rule 7 drops the attribution).
    if QUOTE_HEADER in pat:
        last_quote = max((k for k, c in enumerate(pat) if c == QUOTE), default=-1)
        if not (starts_with_attribution and last_quote < 0):
            for k in range(last_quote + 1, len(pat)):
                if pat[k] == QUOTE_HEADER:
                    p = lines.prev_non_empty(k)
                    if p >= 0 and pat[p] == TEXT:
                        lines.cut(k)
                        break

    # 5. Text, then an attribution with its quote, then at most a few lines of text (a
    #    signature) to the end: cut at the attribution.  Text that answers between quoted
    #    blocks never matches, as the quote must be one block.
    quotish = (QUOTE, QUOTE_HEADER, EMAIL_HEADER)
    if QUOTE_HEADER in pat:
        last_block = max((k for k, c in enumerate(pat) if c in quotish), default=-1)
        r0 = last_block
        while r0 > 0 and (pat[r0 - 1] in quotish or pat[r0 - 1] == EMPTY):
            r0 -= 1
        head = lines.first_non_empty(r0) if last_block >= 0 else -1
        trailing_text = pat[last_block + 1:].count(TEXT)
        if (
            head >= 0
            and pat[head] == QUOTE_HEADER
            and r0 > 0
            and pat[r0 - 1] == TEXT
            and trailing_text < _MAX_SIGNATURE_TEXT_LINES
        ):
            lines.cut(head)

    # 6. Text followed by a quote that ends the message: drop the quote.
    k = len(pat)
    while k > 0 and pat[k - 1] in (QUOTE, QUOTE_HEADER, EMPTY):
        k -= 1
    if 0 < k < len(pat) and pat[k - 1] == TEXT:
        lines.cut(k)

    # 7. Remaining attributions go one by one (inline answers keep their quotes).
    lines.drop(QUOTE_HEADER)
    pat = lines.pat

    # 8. An Outlook header block after text (possibly with quotes between): cut there.
    previous = None
    for k, c in enumerate(pat):
        if c == EMAIL_HEADER and previous == TEXT:
            lines.cut(k)
            break
        if c not in (EMPTY, QUOTE):
            previous = c

    # 9. Remaining header lines go (a forward without comment starts with its header block).
    lines.drop(EMAIL_HEADER)
    pat = lines.pat

    # 10. Trailing quotes go when there is some text.
    if TEXT in pat:
        k = len(pat)
        while k > 0 and pat[k - 1] in (QUOTE, EMPTY):
            k -= 1
        lines.cut(k)

    return lines.idx, signature, delimiter_at


def _join(lines: list[str]) -> str:
    """Join lines, leaving out leading and trailing blank lines."""
    start, end = 0, len(lines)
    while start < end and not _clean(lines[start]):
        start += 1
    while end > start and not _clean(lines[end - 1]):
        end -= 1
    return "\n".join(lines[start:end])


def split_reply(text: str) -> ReplySplit:
    """Split the plain-text body of an email into reply, quoted history and signature.

    Never raises for any string; linear in the length of ``text``.
    """
    if not text or not text.strip():
        return ReplySplit(reply="", quoted="", signature="")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")

    classes = _classify(lines)
    kept, mobile_signature, delimiter_at = _decide(classes)
    kept_set = set(kept)

    if not any(classes[i] != EMPTY for i in kept):
        # Nothing left.  A message that is nothing but a quote (or a header block) is shown
        # whole rather than as an empty message.  One made only of attribution lines ("> On ...
        # wrote:" nested over and over), rules and signatures has no content to show.
        if TEXT in classes or QUOTE in classes or EMAIL_HEADER in classes:
            return ReplySplit(reply=_join(lines), quoted="", signature="")
        kept, kept_set = [], set()
    reply = _join([lines[i] for i in kept])

    # The signature is what was removed between the reply and the first removed line of the
    # quoted history: mobile signature lines, and the block after a delimiter the reply was cut at.
    last_kept = max((i for i in kept if classes[i] != EMPTY), default=-1)
    boundary = next(
        (i for i in range(last_kept + 1, len(lines)) if classes[i] not in (EMPTY, SIGNATURE)),
        len(lines),
    )
    signature_lines = [i for i in mobile_signature if i < boundary]
    if delimiter_at is not None and delimiter_at == boundary:
        block = [delimiter_at]
        k = delimiter_at + 1
        while k < len(lines) and classes[k] in (TEXT, EMPTY, SIGNATURE):
            block.append(k)
            k += 1
        content = sum(1 for i in block if classes[i] in (TEXT, SIGNATURE))
        if 0 < content <= _MAX_SIGNATURE_BLOCK_LINES:
            signature_lines.extend(block)

    quoted = _join([lines[i] for i in range(len(lines)) if i not in kept_set])
    signature = _join([lines[i] for i in sorted(set(signature_lines))])
    return ReplySplit(reply=reply, quoted=quoted, signature=signature)

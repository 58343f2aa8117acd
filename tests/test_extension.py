"""The extension as a host developer meets it: factory, two apps, config, callbacks."""
import pytest
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from shared_inbox import SharedInbox, get_state
from shared_inbox.config import DEFAULTS


def test_app_factory_and_direct_init_both_work(make_host):
    factory = make_host(factory=True)
    direct = make_host(factory=False)
    for h in (factory, direct):
        assert isinstance(h.app.extensions["shared_inbox"].extension, SharedInbox)
        assert "shared_inbox.index" in h.app.view_functions


def test_one_extension_object_serves_two_apps_with_their_own_config(make_host, tmp_path):
    first = make_host(config={"SHARED_INBOX_URL_PREFIX": "/help", "SHARED_INBOX_PAGE_SIZE": 7})
    # A second app for the same extension object and the same db and user model.
    second = Flask("second", instance_path=str(tmp_path / "second"))
    second.config.update(TESTING=True, SECRET_KEY="x",
                         SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'second.db'}",
                         SHARED_INBOX_URL_PREFIX="/desk")
    first.db.init_app(second)
    first.inbox.init_app(second, db=first.db, user_model=first.User)
    assert get_state(first.app).models is get_state(second).models
    assert first.app.config["SHARED_INBOX_PAGE_SIZE"] == 7
    assert second.config["SHARED_INBOX_PAGE_SIZE"] == DEFAULTS["PAGE_SIZE"]
    assert first.app.url_map.bind("x").match("/help/") == ("shared_inbox.index", {})
    assert second.url_map.bind("x").match("/desk/") == ("shared_inbox.index", {})
    # The extension keeps no reference to an app (Flask extension guideline).
    assert not any(isinstance(v, Flask) for v in vars(first.inbox).values())


def test_every_config_key_gets_a_documented_default(make_host):
    from shared_inbox.config import DOCS

    h = make_host()
    for key in DEFAULTS:
        assert "SHARED_INBOX_" + key in h.app.config
        assert DOCS.get(key), f"SHARED_INBOX_{key} is not documented"
    # Under app.testing nothing runs in the background and no mail is sent.
    assert h.app.config["SHARED_INBOX_SCHEDULER"] is False
    assert h.app.config["SHARED_INBOX_SEND_MAIL"] is False


def test_testing_app_starts_no_background_scheduler_even_when_opted_in(make_host):
    host = make_host(config={"SHARED_INBOX_SCHEDULER": True})
    host.create_tables()
    client = host.app.test_client()
    uid = host.add_user("a@x.test", role="admin")
    host.login(client, uid)
    assert client.get("/support/").status_code == 200
    assert get_state(host.app).scheduler is None


def test_registering_twice_is_a_clear_error(host):
    with pytest.raises(RuntimeError, match="already initialised"):
        host.inbox.init_app(host.app, db=host.db, user_model=host.User)


def test_missing_db_is_a_clear_error(tmp_path):
    app = Flask("nodb")
    with pytest.raises(TypeError, match="db and user model"):
        SharedInbox().init_app(app)
    with pytest.raises(RuntimeError, match="db.init_app"):
        SharedInbox().init_app(app, db=SQLAlchemy(), user_model=object)


def test_model_classes_do_not_collide_with_host_ticket_message_tag(make_host):
    h = make_host(extra_models=True)
    h.create_tables()
    Ticket, Message, Tag = h.host_models
    m = h.m
    assert m.Ticket is not Ticket and m.Message is not Message and m.Tag is not Tag
    assert m.Ticket.__tablename__ == "inbox_ticket" and Ticket.__tablename__ == "ticket"
    with h.app.app_context():
        h.db.session.add_all([Ticket(title="host"), m.Tag(name="vip")])
        h.db.session.commit()
        assert h.db.session.query(Ticket).one().title == "host"
        assert h.db.session.query(m.Tag).one().name == "vip"


def test_user_display_callback_and_default(host):
    uid = host.add_user("ada@x.test", name="Ada Lovelace")
    with host.app.app_context():
        user = host.db.session.get(host.User, uid)
        assert host.inbox.display_user(user)["name"] == "Ada Lovelace"

        @host.inbox.user_display
        def show(u):
            return {"name": u.name.upper(), "avatar_url": "/a.png"}

        shown = host.inbox.display_user(user)
        assert shown == {"name": "ADA LOVELACE", "email": "ada@x.test", "avatar_url": "/a.png"}


def test_secrets_are_encrypted_at_rest_and_readable_back(host):
    import sqlalchemy as sa

    with host.app.app_context():
        m = host.inbox.models
        mb = m.Mailbox(name="S", email_address="s@x.test")
        mb.imap_password = "hunter2-very-secret"
        host.db.session.add(mb)
        host.db.session.commit()
        stored = host.db.session.execute(sa.text("SELECT imap_secret FROM inbox_mailbox")).scalar()
        assert "hunter2" not in stored
        host.db.session.expire_all()
        assert host.db.session.get(m.Mailbox, mb.id).imap_password == "hunter2-very-secret"


def test_explicit_encryption_keys_rotate(make_host):
    from shared_inbox.crypto import SecretBox, generate_key

    old, new = generate_key(), generate_key()
    token = SecretBox([old.encode()]).encrypt("pw")
    rotated_box = SecretBox([new.encode(), old.encode()])
    assert rotated_box.decrypt(token) == "pw"
    assert SecretBox([new.encode()]).decrypt(rotated_box.rotate(token)) == "pw"
    h = make_host(config={"SHARED_INBOX_ENCRYPTION_KEYS": [new, old]})
    assert get_state(h.app).secrets.decrypt(token) == "pw"

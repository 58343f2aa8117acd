"""The ``SharedInbox`` extension object: registration, callbacks, per-app state."""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable

from flask import Flask, current_app

from . import config
from .crypto import SecretBox
from .models import build_models
from .storage import FilesystemStorage, Storage

log = logging.getLogger("shared_inbox")

EXTENSION_KEY = "shared_inbox"


@dataclass
class InboxState:
    """Everything one app needs; stored in ``app.extensions["shared_inbox"]``."""

    extension: "SharedInbox"
    db: Any
    user_model: type
    models: SimpleNamespace
    secrets: SecretBox
    storage: Storage
    blueprint_name: str
    scheduler: Any = None
    scheduler_lock: threading.Lock = field(default_factory=threading.Lock)


def get_state(app: Flask | None = None) -> InboxState:
    """The shared_inbox state of ``app`` (default: the current app)."""
    app = app or current_app
    try:
        return app.extensions[EXTENSION_KEY]
    except KeyError:
        raise RuntimeError(
            "shared_inbox is not initialised on this app: call SharedInbox.init_app(app, ...)"
        ) from None


def _default_is_agent(user) -> bool:
    return bool(getattr(user, "is_authenticated", False))


def _default_is_admin(user) -> bool:
    return bool(getattr(user, "is_admin", False))


def _default_display(user) -> dict:
    name = (
        getattr(user, "name", None)
        or getattr(user, "full_name", None)
        or getattr(user, "username", None)
        or getattr(user, "email", None)
        or str(user.get_id() if hasattr(user, "get_id") else user)
    )
    return {"name": name, "email": getattr(user, "email", None) or "", "avatar_url": None}


class SharedInbox:
    """A shared ticket inbox mounted into a host Flask app.

    ``SharedInbox(app, db=db, user_model=User)`` or, with an app factory,
    ``inbox = SharedInbox()`` then ``inbox.init_app(app, db=db, user_model=User)``.
    """

    def __init__(self, app: Flask | None = None, *, db=None, user_model=None):
        self.db = db
        self.user_model = user_model
        self._is_agent: Callable[[Any], bool] = _default_is_agent
        self._is_admin: Callable[[Any], bool] = _default_is_admin
        self._display_user: Callable[[Any], dict] = _default_display
        self.customer_context_providers: list[Callable] = []
        self.demo_seeders: list[Callable] = []
        if app is not None:
            self.init_app(app)

    # -- registration -----------------------------------------------------------------
    def init_app(self, app: Flask, db=None, user_model=None) -> None:
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("shared_inbox is already initialised on this app")
        db = db or self.db
        user_model = user_model or self.user_model
        if db is None or user_model is None:
            raise TypeError("SharedInbox needs the host's Flask-SQLAlchemy db and user model")
        if "sqlalchemy" not in app.extensions:
            raise RuntimeError("call db.init_app(app) before inbox.init_app(app)")

        config.apply_defaults(app)
        models = build_models(db, user_model, config.cv("TABLE_PREFIX", app))
        state = InboxState(
            extension=self,
            db=db,
            user_model=user_model,
            models=models,
            secrets=SecretBox.from_app(app),
            storage=self._make_storage(app),
            blueprint_name=config.cv("BLUEPRINT_NAME", app),
        )
        app.extensions[EXTENSION_KEY] = state

        from .services.webhooks import connect_signals

        connect_signals()  # outgoing webhooks queue deliveries on every signal

        from .cli import make_cli_group

        app.cli.add_command(make_cli_group(config.cv("CLI_GROUP", app)))

        if config.cv("REGISTER_BLUEPRINT", app):
            from .views import create_blueprint

            app.register_blueprint(
                create_blueprint(state.blueprint_name),
                url_prefix=config.cv("URL_PREFIX", app),
            )
            from .views.public import create_public_blueprint

            app.register_blueprint(
                create_public_blueprint(state.blueprint_name),
                url_prefix=config.cv("PUBLIC_URL_PREFIX", app),
            )

        if config.cv("SCHEDULER", app) and not app.testing:
            from .scheduler import start_on_first_request

            start_on_first_request(app)

    @staticmethod
    def _make_storage(app: Flask) -> Storage:
        storage = config.cv("ATTACHMENT_STORAGE", app)
        if storage == "filesystem":
            return FilesystemStorage(config.cv("ATTACHMENT_DIR", app))
        if isinstance(storage, str):
            raise ValueError(f"unknown SHARED_INBOX_ATTACHMENT_STORAGE {storage!r}")
        return storage

    # -- host callbacks ----------------------------------------------------------------
    def agent_loader(self, fn: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """Register ``fn(user) -> bool``: may this user work in the inbox at all?"""
        self._is_agent = fn
        return fn

    def admin_loader(self, fn: Callable[[Any], bool]) -> Callable[[Any], bool]:
        """Register ``fn(user) -> bool``: may this user see every mailbox and change settings?"""
        self._is_admin = fn
        return fn

    def user_display(self, fn: Callable[[Any], dict]) -> Callable[[Any], dict]:
        """Register ``fn(user) -> {"name", "email", "avatar_url"}`` for showing an agent."""
        self._display_user = fn
        return fn

    def customer_context(self, fn: Callable) -> Callable:
        """Register ``fn(customer) -> {"title", "template", "data", "values"} | None``: a panel
        beside each ticket of that customer (several providers may be registered; each runs
        with a timeout and is cached, see ``shared_inbox.services.context``)."""
        self.customer_context_providers.append(fn)
        return fn

    def oauth_token_provider(self, fn: Callable[[Any], str]) -> Callable[[Any], str]:
        """Register ``fn(mailbox) -> access token`` for XOAUTH2 mailboxes, used instead of
        refreshing the stored refresh token (see ``shared_inbox.mail.oauth``)."""
        self._oauth_token_provider = fn
        return fn

    def demo_seeder(self, fn: Callable) -> Callable:
        """Register ``fn(mailboxes)`` run by ``flask inbox demo`` after it made the mailboxes."""
        self.demo_seeders.append(fn)
        return fn

    # -- asking the callbacks --------------------------------------------------------------
    def is_agent(self, user) -> bool:
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        return bool(self._is_admin(user)) or bool(self._is_agent(user))

    def is_admin(self, user) -> bool:
        if user is None or not getattr(user, "is_authenticated", False):
            return False
        return bool(self._is_admin(user))

    def display_user(self, user) -> dict:
        if user is None:
            return {"name": "", "email": "", "avatar_url": None}
        info = dict(_default_display(user))
        info.update(self._display_user(user) or {})
        return info

    # -- conveniences ---------------------------------------------------------------------
    @property
    def models(self) -> SimpleNamespace:
        """The mapped classes for the current app (``inbox.models.Ticket``...)."""
        return get_state().models

    def create_all(self) -> None:
        """Create this extension's tables (only those) and mark the schema current."""
        from .schema import init_db

        init_db()

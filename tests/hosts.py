"""Host applications for the tests: each builds its own Flask app, db and user model the way
a real site would, so the extension is tested against hosts it has never seen."""
from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import Flask
from flask_login import LoginManager, UserMixin
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from shared_inbox import SharedInbox


class Host:
    """One host site: app, db, user model, the extension, and helpers to make users."""

    def __init__(self, *, database_url: str, tmp_path, pk: str = "int",
                 user_table: str = "users", declarative: bool = False,
                 extra_models: bool = False, config: dict | None = None, factory: bool = True):
        if declarative:
            class Base(DeclarativeBase):
                pass
            self.db = SQLAlchemy(model_class=Base)
        else:
            self.db = SQLAlchemy()
        db = self.db

        pk_column = (
            sa.Column(sa.Uuid, primary_key=True, default=uuid.uuid4) if pk == "uuid"
            else sa.Column(sa.Integer, primary_key=True)
        )

        class User(UserMixin, db.Model):
            __tablename__ = user_table
            id = pk_column
            email = sa.Column(sa.String(255), unique=True, nullable=False)
            name = sa.Column(sa.String(120), nullable=False, default="")
            role = sa.Column(sa.String(20), nullable=False, default="agent")

        self.User = User
        if extra_models:
            # A shop that already has models called Ticket, Message and Tag.
            class Ticket(db.Model):
                __tablename__ = "ticket"
                id = sa.Column(sa.Integer, primary_key=True)
                title = sa.Column(sa.String(100))

            class Message(db.Model):
                __tablename__ = "message"
                id = sa.Column(sa.Integer, primary_key=True)
                body = sa.Column(sa.Text)

            class Tag(db.Model):
                __tablename__ = "tag"
                id = sa.Column(sa.Integer, primary_key=True)
                name = sa.Column(sa.String(50))

            self.host_models = (Ticket, Message, Tag)

        app = Flask(f"host_{uuid.uuid4().hex[:8]}", instance_path=str(tmp_path / "instance"))
        app.config.update(
            TESTING=True,
            SECRET_KEY="test-secret",
            SQLALCHEMY_DATABASE_URI=database_url,
            SHARED_INBOX_ATTACHMENT_DIR=str(tmp_path / "files"),
            SHARED_INBOX_URL_PREFIX="/support",
        )
        app.config.update(config or {})
        db.init_app(app)
        login = LoginManager(app)
        login.login_view = "login"

        @login.user_loader
        def load_user(user_id):
            return db.session.get(User, uuid.UUID(user_id) if pk == "uuid" else int(user_id))

        @app.route("/login")
        def login():
            return "host login page"

        if factory:
            self.inbox = SharedInbox()
            self.inbox.init_app(app, db=db, user_model=User)
        else:
            self.inbox = SharedInbox(app, db=db, user_model=User)

        @self.inbox.agent_loader
        def is_agent(user):
            return user.role in ("agent", "admin")

        @self.inbox.admin_loader
        def is_admin(user):
            return user.role == "admin"

        self.app = app
        self.pk = pk

    @property
    def m(self):
        with self.app.app_context():
            return self.inbox.models

    def create_tables(self) -> None:
        with self.app.app_context():
            self.db.metadata.create_all(self.db.engine, tables=[self.User.__table__])
            if hasattr(self, "host_models"):
                self.db.metadata.create_all(
                    self.db.engine, tables=[mm.__table__ for mm in self.host_models])
            self.inbox.create_all()

    def drop_all(self) -> None:
        """Leave the database as empty as it was (it is shared by tests on PostgreSQL)."""
        with self.app.app_context():
            self.db.session.remove()
            if self.db.engine.dialect.name == "postgresql":
                with self.db.engine.begin() as conn:
                    conn.execute(sa.text("DROP SCHEMA public CASCADE"))
                    conn.execute(sa.text("CREATE SCHEMA public"))
            self.db.engine.dispose()

    def add_user(self, email: str, role: str = "agent", name: str = ""):
        with self.app.app_context():
            user = self.User(email=email, role=role, name=name or email.split("@")[0].title())
            self.db.session.add(user)
            self.db.session.commit()
            return user.id

    def login(self, client, user_id) -> None:
        with client.session_transaction() as sess:
            sess["_user_id"] = str(user_id)
            sess["_fresh"] = True

    def member_client(self, mailbox_id, email: str = "ada@x.test"):
        """A logged-in test client of a new agent who belongs to the mailbox; returns
        ``(client, user id)``."""
        agent = self.add_user(email)
        with self.app.app_context():
            self.db.session.add(self.inbox.models.MailboxMember(mailbox_id=mailbox_id,
                                                                user_id=agent))
            self.db.session.commit()
        client = self.app.test_client()
        self.login(client, agent)
        return client, agent


def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'host.db'}"

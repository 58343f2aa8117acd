"""The shop's own tables: it had users and orders long before it had an inbox."""
from datetime import datetime

from flask_login import UserMixin
from flask_sqlalchemy import SQLAlchemy
from werkzeug.security import check_password_hash, generate_password_hash

db = SQLAlchemy()


class User(UserMixin, db.Model):
    __tablename__ = "shop_users"
    id = db.Column(db.Integer, primary_key=True)
    email = db.Column(db.String(255), unique=True, nullable=False)
    name = db.Column(db.String(120), nullable=False)
    password_hash = db.Column(db.String(255), nullable=False)
    is_staff = db.Column(db.Boolean, nullable=False, default=False)
    is_admin = db.Column(db.Boolean, nullable=False, default=False)

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class Order(db.Model):
    __tablename__ = "shop_orders"
    id = db.Column(db.Integer, primary_key=True)
    number = db.Column(db.Integer, unique=True, nullable=False)
    email = db.Column(db.String(255), nullable=False, index=True)
    placed_at = db.Column(db.DateTime, nullable=False, default=datetime.utcnow)
    total_cents = db.Column(db.Integer, nullable=False)
    status = db.Column(db.String(20), nullable=False, default="paid")
    items = db.Column(db.JSON, nullable=False, default=list)

    @property
    def total(self) -> str:
        return f"€{self.total_cents / 100:,.2f}"

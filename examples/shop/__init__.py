"""Acme Outdoor: a small Flask shop with its own users and orders, and a support inbox.

The shared inbox is mounted at /support with the ten lines marked below.
"""
import os

import sqlalchemy as sa
from flask import Flask, abort, flash, redirect, render_template, request, url_for
from flask_login import LoginManager, current_user, login_required, login_user, logout_user

from shared_inbox import SharedInbox

from .models import Order, User, db

login_manager = LoginManager()
login_manager.login_view = "login"
inbox = SharedInbox()


@inbox.customer_context
def orders(customer):
    """The customer's orders from the shop's own table, beside each of their tickets.

    Runs with a timeout and is cached by the inbox; ``values`` feed the inbox's rules.
    """
    rows = db.session.scalars(
        sa.select(Order).where(sa.func.lower(Order.email) == customer.email.lower())
        .order_by(Order.placed_at.desc())).all()
    spent = sum(o.total_cents for o in rows if o.status != "refunded") / 100
    return {
        "title": "Orders",
        "template": "shop/_orders_panel.html",
        "data": {"orders": [
            {"number": o.number, "placed_at": o.placed_at, "total": o.total, "status": o.status,
             "items": [f"{i['qty']} × {i['product']}" for i in o.items or []]}
            for o in rows[:5]], "count": len(rows), "spent": f"€{spent:,.2f}"},
        "values": {"orders.count": len(rows), "orders.total": spent, "vip": spent >= 500},
    }


@login_manager.user_loader
def load_user(user_id):
    return db.session.get(User, int(user_id))


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        # Demo only: a real shop sets SECRET_KEY and SHARED_INBOX_ENCRYPTION_KEYS from its
        # environment.
        SECRET_KEY=os.environ.get("SHOP_SECRET_KEY", "acme-demo-secret-change-me"),
        SQLALCHEMY_DATABASE_URI=os.environ.get(
            "SHOP_DATABASE_URL", "sqlite:///" + os.path.join(app.instance_path, "shop.db")),
        SHARED_INBOX_URL_PREFIX="/support",
        # The contact form's own pages (errors, "thank you") look like the rest of the shop.
        SHARED_INBOX_PUBLIC_BASE_TEMPLATE="shop/layout.html",
    )
    # Production settings from the environment, the Flask way: FLASK_SECRET_KEY,
    # FLASK_SQLALCHEMY_DATABASE_URI, FLASK_SHARED_INBOX_ENCRYPTION_KEYS='["key"]'...
    app.config.from_prefixed_env()
    app.config.update(config or {})
    db.init_app(app)
    login_manager.init_app(app)

    # --- the inbox: these lines are all it takes ---------------------------------------
    inbox.init_app(app, db=db, user_model=User)

    @inbox.agent_loader
    def is_agent(user):
        return user.is_staff

    @inbox.admin_loader
    def is_admin(user):
        return user.is_admin

    @inbox.user_display
    def display(user):
        return {"name": user.name, "email": user.email}
    # ----------------------------------------------------------------------------------

    @inbox.demo_seeder
    def seed_demo(mailboxes):
        from .seed import (print_accounts, seed_accounts_and_orders, seed_automation,
                           seed_memberships)

        seed_accounts_and_orders()
        seed_memberships(mailboxes)
        seed_automation(mailboxes)
        print_accounts()

    register_views(app)
    register_cli(app)
    return app


def register_cli(app: Flask) -> None:
    @app.cli.command("seed")
    def seed_command():
        """Create the shop's tables, staff accounts and sample orders."""
        from .seed import print_accounts, seed_accounts_and_orders

        seed_accounts_and_orders()
        print_accounts()


def register_views(app: Flask) -> None:
    @app.route("/")
    def home():
        from .seed import PRODUCTS

        return render_template("shop/home.html", products=PRODUCTS)

    @app.route("/contact")
    def contact():
        """The shop's own page with the inbox's contact form (a ticket in the support box)."""
        return render_template("shop/contact.html")

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = None
        email = request.form.get("email", "")
        if request.method == "POST":
            user = db.session.scalar(sa.select(User).where(User.email == email.strip().lower()))
            if user is not None and user.check_password(request.form.get("password", "")):
                login_user(user)
                target = request.args.get("next", "")
                # Only local paths: never redirect to another site after login.
                if not target.startswith("/") or target.startswith("//"):
                    target = url_for("home")
                return redirect(target)
            error = "Wrong email or password."
        return render_template("shop/login.html", error=error, email=email), 401 if error else 200

    @app.route("/logout", methods=["POST"])
    def logout():
        logout_user()
        flash("Signed out.")
        return redirect(url_for("home"))

    @app.route("/admin/orders/<int:number>")
    @login_required
    def order_admin(number):
        if not current_user.is_staff:
            abort(403)
        order = db.session.scalar(sa.select(Order).where(Order.number == number))
        if order is None:
            abort(404)
        return render_template("shop/order.html", order=order)

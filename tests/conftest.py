import os
from pathlib import Path

import pytest

from hosts import Host, database_url
from shared_inbox.mail.devserver import DevMailServer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


POSTGRES_URL = os.environ.get("SHARED_INBOX_TEST_DATABASE_URL")
DATABASES = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


@pytest.fixture(scope="session", autouse=True)
def _clean_postgres():
    """Start from an empty PostgreSQL schema even if an earlier run was interrupted."""
    if POSTGRES_URL:
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
        engine.dispose()


@pytest.fixture(params=DATABASES)
def database(request):
    """Every test that builds a host runs on SQLite, and on PostgreSQL when it is configured."""
    return request.param


@pytest.fixture
def make_host(tmp_path, database):
    """Build host apps on demand; every one is torn down (tables dropped) afterwards."""
    made = []

    def _make(**kwargs):
        sub = tmp_path / f"host{len(made)}"
        sub.mkdir()
        url = POSTGRES_URL if database == "postgresql" else database_url(sub)
        host = Host(database_url=kwargs.pop("database_url", None) or url, tmp_path=sub, **kwargs)
        made.append(host)
        return host

    yield _make
    for host in made:
        host.drop_all()


@pytest.fixture
def host(make_host):
    h = make_host()
    h.create_tables()
    return h


@pytest.fixture
def client(host):
    return host.app.test_client()


def require(what: str, available: bool):
    """Skip when a server is missing on a developer machine; fail in CI."""
    if available:
        return
    if os.environ.get("SHARED_INBOX_REQUIRE_ALL") == "1":
        pytest.fail(f"{what} is required in CI but not available")
    pytest.skip(f"{what} not available")


@pytest.fixture
def mail_server():
    """The in-process development IMAP + SMTP server with the three demo mailboxes."""
    with DevMailServer(users={"support@example.com": "support", "sales@example.com": "sales",
                              "billing@example.com": "billing"}) as server:
        yield server


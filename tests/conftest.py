import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hosts import Host, database_url  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


@pytest.fixture
def make_host(tmp_path):
    """Build host apps on demand; every one is torn down (tables dropped) afterwards."""
    made = []

    def _make(**kwargs):
        sub = tmp_path / f"host{len(made)}"
        sub.mkdir()
        host = Host(database_url=kwargs.pop("database_url", None) or database_url(sub),
                    tmp_path=sub, **kwargs)
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

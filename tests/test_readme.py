"""The README stays true: its configuration table lists every key, and CI runs its test command."""
from pathlib import Path

from shared_inbox.config import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]


def test_every_config_key_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    missing = [k for k in DEFAULTS if f"| `SHARED_INBOX_{k}` |" not in readme]
    assert missing == []


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = "pip install -e '.[test]' && pytest"
    assert command in readme
    assert command in (ROOT / ".ci" / "run").read_text()

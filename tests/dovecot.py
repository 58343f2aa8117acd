"""A throwaway Dovecot (Debian's dovecot-imapd) on 127.0.0.1 for real-server tests.

Its own base_dir, state and maildirs in a temporary directory; the system service is never
touched. Needs root (Dovecot drops privileges to `nobody` for mail access).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONFIG = """\
base_dir = {d}/run
state_dir = {d}/state
instance_name = dovecot-si-{port}
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {d}/dovecot.log
mail_location = maildir:{d}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
}}
"""


def available() -> bool:
    return shutil.which("dovecot") is not None and os.geteuid() == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    def __init__(self, users: dict[str, str]):
        self.users = users
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="si-dovecot-"))
        os.chmod(self.dir, 0o755)

    def start(self) -> "Dovecot":
        d = self.dir
        (d / "mail").mkdir()
        (d / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in self.users.items()))
        (d / "dovecot.conf").write_text(CONFIG.format(d=d, port=self.port))
        shutil.chown(d / "mail", "nobody", "nogroup")
        subprocess.run(["dovecot", "-c", str(d / "dovecot.conf")], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not start: " + (d / "dovecot.log").read_text()[-2000:])

    def stop(self) -> None:
        subprocess.run(["dovecot", "-c", str(self.dir / "dovecot.conf"), "stop"], check=False,
                       capture_output=True)
        time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)

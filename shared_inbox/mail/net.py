"""Small network facts shared by the IMAP poller, the SMTP sender and the dev server."""
from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for this machine (``localhost``, 127.0.0.0/8, ``::1``): the only place where an
    unencrypted connection is acceptable."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

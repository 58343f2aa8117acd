"""Encryption at rest for mailbox passwords and OAuth tokens.

Fernet (AES-CBC + HMAC) from ``cryptography``; ``SHARED_INBOX_ENCRYPTION_KEYS`` is a list
of keys, newest first, so keys can be rotated (``flask inbox rotate-keys``). Without it a
key is derived from ``SECRET_KEY`` with HKDF and a warning is logged, because rotating the
session secret would then make the stored passwords unreadable.
"""
from __future__ import annotations

import base64
import logging

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import Flask, current_app

log = logging.getLogger("shared_inbox")


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be read with the configured keys."""


def _derive(secret: str | bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode()
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"shared_inbox.credentials", info=b"fernet"
    ).derive(secret)
    return base64.urlsafe_b64encode(key)


class SecretBox:
    """Encrypts and decrypts short secrets with the app's key list."""

    def __init__(self, keys: list[bytes]):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    @classmethod
    def from_app(cls, app: Flask) -> "SecretBox":
        keys = app.config.get("SHARED_INBOX_ENCRYPTION_KEYS")
        if keys:
            if isinstance(keys, (str, bytes)):
                keys = [keys]
            return cls([k.encode() if isinstance(k, str) else k for k in keys])
        secret = app.config.get("SECRET_KEY")
        if not secret:
            raise RuntimeError(
                "shared_inbox needs SECRET_KEY or SHARED_INBOX_ENCRYPTION_KEYS to encrypt "
                "mailbox credentials"
            )
        if not app.testing:
            log.warning(
                "SHARED_INBOX_ENCRYPTION_KEYS is not set: mailbox passwords are encrypted "
                "with a key derived from SECRET_KEY; changing SECRET_KEY will make them "
                "unreadable. Set SHARED_INBOX_ENCRYPTION_KEYS (see `flask inbox gen-key`)."
            )
        fallbacks = app.config.get("SECRET_KEY_FALLBACKS") or []
        return cls([_derive(secret)] + [_derive(s) for s in fallbacks])

    def encrypt(self, value: str) -> str:
        return self._fernet.encrypt(value.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretDecryptionError(
                "a stored mailbox secret cannot be decrypted with the configured keys"
            ) from exc

    def rotate(self, token: str) -> str:
        return self._fernet.rotate(token.encode()).decode()


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _box() -> SecretBox:
    return current_app.extensions["shared_inbox"].secrets


def encrypt_secret(value: str | None) -> str | None:
    return None if value in (None, "") else _box().encrypt(value)


def decrypt_secret(token: str | None) -> str | None:
    return None if not token else _box().decrypt(token)

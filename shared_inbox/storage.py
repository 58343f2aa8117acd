"""Where raw messages and attachment bytes live: outside the database row.

The default stores files under ``SHARED_INBOX_ATTACHMENT_DIR`` (outside any static
folder; downloads go through an authorized view). A host may pass any object with the
same three methods as ``SHARED_INBOX_ATTACHMENT_STORAGE`` (S3, a database blob store...);
an optional ``put_stream`` (see :meth:`FilesystemStorage.put_stream`) lets ingestion store
large attachments without holding them whole in memory (``mail/large_parts.py``).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import Protocol


class Storage(Protocol):
    def put(self, data: bytes, *, kind: str, suffix: str = "") -> str: ...
    def get(self, key: str) -> bytes: ...
    def delete(self, key: str) -> None: ...


class FilesystemStorage:
    """Content-addressed files: the same bytes are stored once, under their SHA-256."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self._dirs: set[str] = set()  # directories known to exist: no makedirs per put

    def _path(self, key: str) -> str:
        path = os.path.abspath(os.path.join(self.root, key))
        if not path.startswith(self.root + os.sep):
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put(self, data: bytes, *, kind: str, suffix: str = "") -> str:
        digest = hashlib.sha256(data).hexdigest()
        key = f"{kind}/{digest[:2]}/{digest}{suffix}"
        path = self._path(key)
        if not os.path.exists(path):
            directory = os.path.dirname(path)
            if directory not in self._dirs:
                os.makedirs(directory, exist_ok=True)
                self._dirs.add(directory)
            # Write then rename, so a crash never leaves a half-written file under its name;
            # fsync before the rename (and so before the commit that references the file).
            try:
                fd, tmp = tempfile.mkstemp(dir=directory)
            except FileNotFoundError:  # removed behind our back since we created it
                os.makedirs(directory, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=directory)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, path)
            except BaseException:
                try:
                    os.remove(tmp)
                except OSError:
                    pass
                raise
        return key

    def put_stream(self, chunks, *, kind: str, suffix: str = "") -> tuple[str, int, str]:
        """Like :meth:`put` for bytes that arrive in pieces (a large attachment decoded as
        it is read), so they are never whole in memory: hashed while written to a temporary
        file, fsynced, then renamed to their content address.  Returns ``(key, size,
        sha256 hex)``.  If ``chunks`` raises, nothing is left behind."""
        base = self._path(kind)
        os.makedirs(base, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=base, prefix=".partial-")
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as fh:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    fh.write(chunk)
                hexdigest = digest.hexdigest()
                key = f"{kind}/{hexdigest[:2]}/{hexdigest}{suffix}"
                path = self._path(key)
                exists = os.path.exists(path)  # a re-delivered mail: no second fsync
                if not exists:
                    fh.flush()
                    os.fsync(fh.fileno())
            if exists:
                os.remove(tmp)
            else:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                os.replace(tmp, path)
        except BaseException:
            try:
                os.remove(tmp)
            except OSError:
                pass
            raise
        return key, size, hexdigest

    def get(self, key: str) -> bytes:
        with open(self._path(key), "rb") as fh:
            return fh.read()

    def delete(self, key: str) -> None:
        try:
            os.remove(self._path(key))
        except FileNotFoundError:
            pass

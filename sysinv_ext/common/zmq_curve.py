"""CURVE key files for our agent <-> our conductor over ZeroMQ (libzmq's own CurveZMQ).

Keys are pyzmq's certificate files (``zmq.auth.create_certificates``: ``NAME.key`` holds the
public key, ``NAME.key_secret`` the public and the secret key). A secret key file must be a
regular file that only its owner may read (mode 0600 or stricter): one readable by anyone else
is refused, as ssh refuses such a private key. The server side checks callers against the
public key files in a directory through a ZAP handler (pyzmq's ``ThreadAuthenticator`` with
:class:`AllowedKeys` as its callback, which re-reads the directory when it changes), so keys
are added or revoked by adding or removing files. Knows nothing of RPC methods.
"""
from __future__ import annotations

import logging
import os
import stat
import threading
from dataclasses import dataclass

import zmq.auth

LOG = logging.getLogger(__name__)


class CurveKeyError(ValueError):
    """A key file that is missing, unreadable, too open or not a CURVE certificate."""


@dataclass(frozen=True)
class ServerKeys:
    """The conductor's key pair and the directory of allowed agents' public key files."""

    public: bytes
    secret: bytes
    allowed_dir: str


@dataclass(frozen=True)
class ClientKeys:
    """The agent's key pair and the conductor's public key."""

    public: bytes
    secret: bytes
    server_public: bytes


class AllowedKeys:
    """The CURVE credentials callback: is this client key (z85) in ``directory``'s ``*.key``?

    Reloads the directory when its modification time changes (a key file added or removed); an
    unreadable directory or key file allows no one until it is fixed, with one log line."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._stamp: int | None = None
        self._keys: frozenset[bytes] = frozenset()
        self._failing = False

    def callback(self, domain: str, key: bytes) -> bool:
        with self._lock:
            try:
                stamp = os.stat(self.directory).st_mtime_ns
                if stamp != self._stamp:
                    self._keys = frozenset(zmq.auth.load_certificates(self.directory))
                    self._stamp, self._failing = stamp, False
            except (OSError, ValueError) as err:
                if not self._failing:  # once per outage, not per connection attempt
                    LOG.error("CURVE allowed client keys in %s unreadable (%s): no client "
                              "allowed until fixed", self.directory, err)
                self._keys, self._stamp, self._failing = frozenset(), None, True
            return key in self._keys


def _load(path: str, *, secret: bool) -> tuple[bytes, bytes | None]:
    try:
        info = os.stat(path)
    except OSError as err:
        raise CurveKeyError(f"CURVE key file {path}: {err.strerror}") from err
    if not stat.S_ISREG(info.st_mode):
        raise CurveKeyError(f"CURVE key file {path} is not a regular file")
    if secret and info.st_mode & 0o077:
        raise CurveKeyError(f"CURVE secret key file {path} has mode {info.st_mode & 0o777:04o}: "
                            "others may read it; make it 0600 (chmod 600)")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as err:
        raise CurveKeyError(f"CURVE key file {path} is not a CURVE certificate: {err}") from err
    if secret and not secret_key:
        raise CurveKeyError(f"CURVE key file {path} holds no secret key (want NAME.key_secret)")
    return public, secret_key


def load_server_keys(secret_key_file: str, allowed_dir: str) -> ServerKeys:
    public, secret = _load(secret_key_file, secret=True)
    if not os.path.isdir(allowed_dir):
        raise CurveKeyError(f"CURVE allowed client key directory {allowed_dir} is not a directory")
    assert secret is not None
    return ServerKeys(public, secret, allowed_dir)


def load_client_keys(secret_key_file: str, server_key_file: str) -> ClientKeys:
    public, secret = _load(secret_key_file, secret=True)
    server_public, _ = _load(server_key_file, secret=False)
    assert secret is not None
    return ClientKeys(public, secret, server_public)


def create_key_pair(directory: str, name: str) -> tuple[str, str]:
    """Write ``NAME.key`` (0644) and ``NAME.key_secret`` (0600) in ``directory``; their paths."""
    os.makedirs(directory, mode=0o755, exist_ok=True)
    old = os.umask(0o077)  # the secret file is never readable by others, not even briefly
    try:
        public_file, secret_file = zmq.auth.create_certificates(directory, name)
    finally:
        os.umask(old)
    os.chmod(secret_file, 0o600)
    os.chmod(public_file, 0o644)
    return public_file, secret_file

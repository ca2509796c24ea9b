"""The lab's Ed25519 key pair (``cryptography``): generate, load, fingerprint, sign, check.

lab.key is the private key (PKCS #8 PEM, file mode 0600, refused when others may read it);
lab.pub the public key (SubjectPublicKeyInfo PEM). The fingerprint is the first 128 bits of the
SHA-256 of the 32 raw public-key bytes, as 32 hex digits: what LAB.toml's key_fingerprint holds.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from meterbench.errors import ConfigError, OutputError

__all__ = [
    "PRIVATE_KEY_FILE",
    "PUBLIC_KEY_FILE",
    "LabKey",
    "PublicKey",
    "generate_keys",
    "load_private_key",
    "load_public_key",
]

PRIVATE_KEY_FILE = "lab.key"
PUBLIC_KEY_FILE = "lab.pub"


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise ConfigError("certificates need the 'cryptography' package: pip install 'meterbench[cert]'") from None
    return ed25519, serialization, InvalidSignature


class PublicKey:
    """An Ed25519 public key: checks signatures; ``fingerprint`` names it."""

    def __init__(self, key) -> None:
        _, serialization, self._invalid = _crypto()
        self._key = key
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.fingerprint = hashlib.sha256(raw).hexdigest()[:32]

    def pem(self) -> bytes:
        """The key as SubjectPublicKeyInfo PEM (the lab.pub form)."""
        _, serialization, _ = _crypto()
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True when ``signature`` is this key's signature of ``message``."""
        try:
            self._key.verify(signature, message)
        except self._invalid:
            return False
        return True


class LabKey:
    """The lab's private key: signs; ``public`` is its public key."""

    def __init__(self, key) -> None:
        self._key = key
        self.public = PublicKey(key.public_key())

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)


def generate_keys(key_dir: Path) -> PublicKey:
    """Write a new key pair into ``key_dir`` (created 0700 if missing); OutputError if either file exists."""
    ed25519, serialization, _ = _crypto()
    key_dir = Path(key_dir)
    private_path, public_path = key_dir / PRIVATE_KEY_FILE, key_dir / PUBLIC_KEY_FILE
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise OutputError(f"{path}: exists (a lab key is never overwritten; choose another --out)")
    try:
        key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{key_dir}: cannot create the key folder: {exc.strerror or exc}") from None
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = PublicKey(key.public_key()).pem()
    written = []
    try:
        for path, data, mode in ((private_path, private_pem, 0o600), (public_path, public_pem, 0o644)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(path, mode)  # the umask may have taken bits away; never added any
    except OSError as exc:
        for path in written:
            path.unlink(missing_ok=True)
        raise OutputError(f"{key_dir}: cannot write the key pair: {exc.strerror or exc}") from None
    return PublicKey(key.public_key())


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None


def load_private_key(path: Path) -> LabKey:
    """Read lab.key; ConfigError if unreadable, not an Ed25519 private key, or readable by group/others."""
    ed25519, serialization, _ = _crypto()
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the private key: {exc.strerror or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: private key readable by others (mode {stat.S_IMODE(mode):04o}; expected 0600)")
    data = _read_key_file(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 private key, got {type(key).__name__}")
    return LabKey(key)


def load_public_key(path: Path) -> PublicKey:
    """Read lab.pub (PEM); ConfigError if unreadable or not an Ed25519 public key."""
    ed25519, serialization, _ = _crypto()
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ConfigError(f"{path}: expected an Ed25519 public key, got {type(key).__name__}")
    return PublicKey(key)

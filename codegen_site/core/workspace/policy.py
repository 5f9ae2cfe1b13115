"""What the workspace layer never shows, indexes, sends to a model or writes, decided by name
(at any depth) and, for private keys, by content. The one list every walk and every read uses."""

from __future__ import annotations

import re

# Tooling state and secrets, by exact (lower-case) name: version control, virtualenvs, shell and
# package-manager credentials, cloud and SSH key folders.
HIDDEN_NAMES = frozenset({
    ".git", ".venv", ".env", ".netrc", "_netrc", ".pgpass", ".git-credentials", ".npmrc", ".pypirc",
    ".htpasswd", ".ssh", ".aws", ".gnupg", ".docker", ".kube", "credentials", "credentials.json",
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "id_ecdsa_sk", "id_ed25519_sk",
})
# Key and keystore files by suffix.
HIDDEN_SUFFIXES = (".pem", ".key", ".p12", ".pfx", ".jks", ".keystore", ".kdbx", ".gpg", ".asc")
# A private key inside a file of any name, looked for in the file's head: key files start with
# it, and a bounded look keeps a read of a large file from paying a scan of all of it.
_PRIVATE_KEY = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----")
SECRET_SCAN_BYTES = 16 * 1024

# Directories a walk does not enter (caches, dependencies, build output): nothing of the
# user's own lives there, and a search or an analysis of them only costs time.
SKIPPED_DIRS = frozenset({
    ".hg", ".svn", "venv", "node_modules", "__pycache__", ".tox", ".nox", ".mypy_cache", ".pytest_cache",
    ".ruff_cache", ".idea", ".vscode", "site-packages", ".eggs",
})


def is_hidden_name(name: str) -> bool:
    """A file or directory name that is never shown or touched: .git, .venv, .env and .env.*,
    credential files and private keys."""
    lowered = name.lower()
    return (lowered in HIDDEN_NAMES or lowered.startswith(".env.") or lowered.endswith(HIDDEN_SUFFIXES))


def looks_secret(data: bytes) -> bool:
    """The first SECRET_SCAN_BYTES hold a private key (PEM, OpenSSH, PGP), whatever the file is called."""
    head = data[:SECRET_SCAN_BYTES]
    return b"PRIVATE KEY" in head and _PRIVATE_KEY.search(head) is not None

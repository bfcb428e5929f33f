"""The secret of a storage service: from the inventory, from a private file, or asked for
on the terminal (``TBD``), hidden, never stored and never printed."""

from __future__ import annotations

import stat
from pathlib import Path

from ..config.asking import ask_hidden
from ..core.errors import ConfigError, InsecureFileError
from .config import ASK, StorageConfig


def read_secret_file(config: StorageConfig) -> str:
    """The first line of the service's ``secret_file``, which must be private (0600)."""
    path = Path(config.secret_file).expanduser()
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{config.where}.secret_file: {path}: {e.strerror or e}") from None
    if mode & 0o077:
        raise InsecureFileError(f"{config.where}.secret_file: {path} is accessible by group/others "
                                f"(mode {mode:04o}); run: chmod 600 {path}")
    secret = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not secret:
        raise ConfigError(f"{config.where}.secret_file: {path} is empty")
    return secret


def secret_of(config: StorageConfig) -> str:
    """The service's secret ('' when it has none)."""
    if config.secret_file:
        return read_secret_file(config)
    if config.secret != ASK:
        return config.secret
    return ask_hidden(f"{config.where}.secret",
                      f"secret of storage service {config.name} ({config.type}, key {config.key}): ",
                      "run the command on a terminal, or give secret_file")

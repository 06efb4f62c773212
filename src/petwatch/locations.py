"""Where every file petwatch owns lives.

By default the platform's user dirs (platformdirs); ``PETWATCH_HOME=DIR`` puts config, data,
cache and runtime under DIR, so tests and scripts get a private, disposable petwatch.
Nothing here ever points into the user's album folders.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import platformdirs

APP = "petwatch"
HOME_ENV = "PETWATCH_HOME"
# sun_path in sockaddr_un holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107


def home() -> Path | None:
    value = os.environ.get(HOME_ENV)
    return Path(value).expanduser().absolute() if value else None


def config_dir() -> Path:
    root = home()
    return root / "config" if root else Path(platformdirs.user_config_dir(APP))


def data_dir() -> Path:
    root = home()
    return root / "data" if root else Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    root = home()
    return root / "cache" if root else Path(platformdirs.user_cache_dir(APP))


MODELS_ENV = "PETWATCH_MODELS_DIR"


def models_dir() -> Path:
    """Networks exported for ONNX Runtime (engine.py): a cache, rebuilt when missing.
    ``PETWATCH_MODELS_DIR`` moves it (the tests share one between their private homes)."""
    value = os.environ.get(MODELS_ENV)
    return Path(value).expanduser().absolute() if value else cache_dir() / "models"


def runtime_dir() -> Path:
    """Where the socket lives: $XDG_RUNTIME_DIR/petwatch, else /run/user/UID/petwatch when that
    exists (cron, or a shell without the variable, then finds the service's socket), else a
    private dir in the temp dir. Decided here, not by platformdirs, which warns on every
    command when the variable is unset, naming a fallback petwatch would not use."""
    root = home()
    if root:
        return root / "run"
    if sys.platform == "darwin":
        return Path(platformdirs.user_runtime_dir(APP))
    for base in (os.environ.get("XDG_RUNTIME_DIR", ""), f"/run/user/{os.getuid()}"):
        if os.path.isabs(base) and os.path.isdir(base):
            return Path(base) / APP
    return Path(tempfile.gettempdir()) / f"{APP}-{os.getuid()}"


def config_file() -> Path:
    return config_dir() / "config.toml"


def milvus_lite_db() -> Path:
    return data_dir() / "milvus.db"


def state_db() -> Path:
    """SQLite file for what is not a vector: failures, pet profiles and marks, comic jobs."""
    return data_dir() / "state.sqlite3"


def comics_dir() -> Path:
    return data_dir() / "comics"


def thumbnails_dir() -> Path:
    return cache_dir() / "thumbnails"


def socket_path() -> Path:
    return runtime_dir() / "petwatch.sock"


def daemon_lock() -> Path:
    return data_dir() / "daemon.lock"


def log_file() -> Path:
    return data_dir() / "daemon.log"


def daemon_hint_shown() -> Path:
    """Marks that a search without a daemon has told this user how to make searches fast."""
    return cache_dir() / "daemon-hint-shown"


def milvus_lite_log_dir() -> Path:
    """Milvus Lite's own log files (glog), which it would otherwise leave in /tmp on every open."""
    return cache_dir() / "milvus-lite-logs"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable by this user only."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def all_paths() -> dict[str, Path]:
    """Every location, for ``petwatch config``."""
    return {
        "config_file": config_file(),
        "data_dir": data_dir(),
        "cache_dir": cache_dir(),
        "models_dir": models_dir(),
        "runtime_dir": runtime_dir(),
        "milvus_lite_db": milvus_lite_db(),
        "state_db": state_db(),
        "socket": socket_path(),
        "comics_dir": comics_dir(),
        "thumbnails_dir": thumbnails_dir(),
        "log_file": log_file(),
        "milvus_lite_logs": milvus_lite_log_dir(),
    }

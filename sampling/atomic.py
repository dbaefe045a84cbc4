"""Atomic writes: a file or a folder appears complete under its final name, or not at all.

Every checkpoint, export, evaluation JSON and sample output goes through here. A temp file is written in
the *same directory* as its target (so the final ``os.replace`` is a rename on one filesystem, never a
copy), flushed to disk with fsync, then renamed over the target. A kill at any moment leaves either the
old complete file or the new complete file, plus at worst a ``.<name>.*.tmp`` orphan beside it.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable


class OutputError(Exception):
    """An output that cannot be written (full or read-only disk, a file where a folder should be, ...);
    the message is one line naming the path."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some filesystems do not open directories; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def describe_os_error(e: OSError, path: str | Path) -> str:
    """One line for an OSError while writing ``path``: full disk (with the free space), read-only, ..."""
    path = Path(path)
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        probe = path if path.exists() else next((p for p in path.parents if p.exists()), Path("."))
        free = shutil.disk_usage(probe).free
        return f"{path}: no space left on the device ({free / 2**20:.1f} MiB free)"
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"{path}: cannot write there ({os.strerror(e.errno)})"
    return f"{path}: cannot write ({e.strerror or type(e).__name__})"


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temp path beside ``path``, fsync it, then rename it onto ``path``.

    Raises OutputError (one line naming ``path``) when the disk refuses; the temp file is removed then.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(describe_os_error(e, path)) from e
    tmp = Path(name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OutputError(describe_os_error(e, path)) from e
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def staging_dir(out: str | Path) -> Path:
    """A new empty temp folder beside ``out`` (same filesystem), to fill and then ``publish_dir``."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as e:
        raise OutputError(describe_os_error(e, out)) from e


def publish_dir(staging: Path, out: str | Path) -> Path:
    """Rename the complete folder ``staging`` to ``out`` (which must not exist, or be an empty folder).

    The rename is atomic: a reader sees no ``out`` or the whole of it. Each file in ``staging`` is fsynced
    first, so a crash just after cannot leave the files empty.
    """
    out = Path(out)
    try:
        for p in staging.rglob("*"):
            if p.is_file():
                with open(p, "rb+") as f:
                    os.fsync(f.fileno())
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder a plain mkdir()'s mode
        os.rename(staging, out)  # replaces an empty folder; fails if ``out`` holds anything
    except OSError as e:
        shutil.rmtree(staging, ignore_errors=True)
        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise OutputError(f"{out}: the output folder is not empty (another run wrote there first)") from e
        raise OutputError(describe_os_error(e, out)) from e
    _fsync_dir(out.parent)
    return out

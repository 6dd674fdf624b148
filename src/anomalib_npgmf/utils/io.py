"""Atomic file writes: a killed process leaves the old file or the new one, never half of one."""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path`` (same file system).

    The temporary file keeps ``path``'s suffix (or ``suffix``) so writers that pick a format by extension (PIL,
    pandas, torch) still work.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot create the output folder {path.parent}: {error.strerror or error}"
        raise _os_error(error, msg) from error
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    except OSError as error:
        msg = f"cannot write {path} (output folder {path.parent}): {error.strerror or error}"
        raise _os_error(error, msg) from error
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        os.replace(temporary_path, path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_write(path) as temporary, temporary.open("wb") as stream:
        stream.write(data)
        stream.flush()
        os.fsync(stream.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def ensure_writable_folder(folder: str | Path, parameter: str) -> Path:
    """Create ``folder`` and prove a file can be written there, before any long work starts.

    Why: a read-only or full output folder should fail in the first second, naming ``parameter``, not after an hour
    of scoring when the report is written.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        try:
            os.write(handle, b"probe")
            os.fsync(handle)
        finally:
            os.close(handle)
            Path(probe).unlink(missing_ok=True)
    except OSError as error:
        msg = f"{parameter} {folder} is not a writable folder: {error.strerror or error}"
        raise _os_error(error, msg) from error
    return folder


def _os_error(error: OSError, message: str) -> OSError:
    """``message`` as an ``OSError`` of the same kind (``OSError(errno, ...)`` picks ``PermissionError`` etc.)."""
    return OSError(error.errno, message) if error.errno is not None else OSError(message)

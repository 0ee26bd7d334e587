"""Writing files atomically: a temporary file beside the target, fsync, rename, then a sync of
the directory. Readers see the old file or the new one, never half of one, whatever kills the
writer. Torch-free, so the light commands (``zoo runs``, the registry cache) write this way too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to ``path`` so that readers see the old or the new file, never a mix."""
    commit(stage(path, data), path)


def write_output(path: Path, data: bytes, option: str | None = None) -> None:
    """``atomic_write`` of a command's output; what the system refuses is ``write_failed``."""
    try:
        atomic_write(path, data)
    except OSError as exc:
        raise write_failed(path, exc, option) from None


def write_failed(path: Path, exc: OSError, option: str | None = None) -> Exception:
    """The one line for an output the system would not let zoo write (a full disk, a read-only
    folder, no permission): a failure of the command, exit code 1 whatever the reason (the
    input was fine), naming the file and the option that puts it elsewhere, if there is one."""
    from zoo.errors import ZooError, shown

    elsewhere = f"; choose another place with {option}" if option else ""
    reason = exc.strerror or str(exc)
    return ZooError(f"cannot write {shown(path, quote=False)}: {reason}{elsewhere}", exit_code=1)


def stage(path: Path, data: bytes) -> Path:
    """The first half of an atomic write: ``data`` written and synced to a temporary file
    beside ``path`` (``.NAME.XXXX.tmp``), which ``commit`` renames into place. Writing every
    file of a set this way before committing any keeps the set whole when the disk fills."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would make shared runs unreadable
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write names no file: say which
        raise
    return Path(tmp)


def stage_copy(staged: Path, path: Path, data: bytes) -> Path:
    """Stage the same bytes for another file: a hard link to ``staged`` (no space used), or a
    second copy where the file system has no hard links."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.urandom(4).hex()}.tmp"
        try:
            os.link(staged, tmp)
            return tmp
        except FileExistsError:
            continue
        except OSError:
            break
    return stage(path, data)


def commit(tmp: Path, path: Path) -> None:
    """Rename a staged file into place and sync its directory (the rename is then durable)."""
    try:
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

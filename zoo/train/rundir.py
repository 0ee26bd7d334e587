"""The run directory: what a training run leaves behind, and the rules for reusing one.

RUN/model.safetensors         weights after the last completed epoch, with ModelInfo
RUN/model_ema.safetensors     EMA weights (with --ema)
RUN/config.json               timm/Hugging Face config: the run is also a timm folder
RUN/config.toml               the resolved configuration (valid as --config)
RUN/metrics.jsonl, .csv       one line per epoch
RUN/summary.json              best epoch, wall time, throughput, peak memory
RUN/run.json                  when the run started and was resumed; why it failed, if it did
RUN/README.md                 model card in the Hugging Face Hub's format (zoo.models.card)
RUN/checkpoints/last|best.safetensors, epoch-NNNN.safetensors   full training state
RUN/.zoo.lock                 while a process writes the run: its pid, host and command

One process writes a run directory at a time: a new run, ``--resume`` (and every tuning trial,
which runs the trainer) hold an OS lock (``flock``) on ``RUN/.zoo.lock`` for the whole run. The
kernel releases it when the process ends, however it ends, so a killed run never leaves a lock
that blocks ``--resume``.
"""

from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import io
import json
import os
import shutil
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Any

from zoo.errors import ZooError
from zoo.files.atomic import atomic_write
from zoo.train.config import dump_toml

# What makes a directory a zoo run: the ``config.toml`` that every run writes first, whose first
# line is ``zoo_version = "..."``. A zoo run holds a previous run (what a new one must not replace
# without ``--overwrite``) once an epoch completed: its weights, metrics or a checkpoint. A run
# that never completed an epoch (killed, or stopped by a NaN loss or a full disk in its first
# epoch) holds nothing worth keeping, so a new run may reuse its directory.
RUN_MARKERS = ("model.safetensors", "metrics.jsonl")
# Every name zoo writes in a run directory (``zoo train``, ``zoo eval``, ``zoo report``): what
# ``--overwrite`` clears, and what may never be a symbolic link there.
RUN_OUTPUTS = (
    *RUN_MARKERS,
    "checkpoints",
    "config.toml",
    "model_ema.safetensors",
    "metrics.csv",
    "summary.json",
    "run.json",
    "config.json",
    "tensorboard",
    "confusion_matrix.png",
    "training_curves.png",
    "calibration.png",
    "top_losses.png",
    "eval.json",
    "report.html",
    "README.md",
)
RECORD = "run.json"
LAST = Path("checkpoints/last.safetensors")
BEST = Path("checkpoints/best.safetensors")
LOCK = ".zoo.lock"


def default_out(arch_name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{arch_name}-{stamp}"
    out, n = base, 2
    while out.exists():
        out, n = Path(f"{base}-{n}"), n + 1
    return out


def holds_run(path: Path) -> bool:
    """Whether ``path`` holds what a new run must not replace without ``--overwrite``: the
    files of a completed epoch, or a ``config.toml`` that zoo did not write."""
    if not path.is_dir():
        return False
    return completed_epoch(path) or ((path / "config.toml").exists() and not started_run(path))


def completed_epoch(path: Path) -> bool:
    """Whether ``path`` holds a completed epoch's files (or any checkpoint)."""
    if any((path / m).exists() for m in RUN_MARKERS):
        return True
    return any((path / "checkpoints").glob("[!.]*.safetensors"))


def started_run(path: Path) -> bool:
    """Whether ``path`` is a zoo run: it holds the ``config.toml`` zoo wrote (a run killed
    before its first checkpoint has nothing else)."""
    config = path / "config.toml"
    try:
        return config.is_file() and config.read_text().startswith("zoo_version = ")
    except (OSError, UnicodeDecodeError):
        return False


def foreign_names(path: Path) -> list[str]:
    """What a directory that is not a zoo run holds, but for what zoo itself leaves in a
    directory it gave up (the lock file, temporary files of zoo's names): sorted."""
    try:
        names = sorted(p.name for p in path.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    leftovers = {LOCK} | {n for n in names if _temporary(n)}
    return [n for n in names if n not in leftovers]


def _temporary(name: str) -> bool:
    """A temporary file of an atomic write of one of zoo's names (``.NAME.XXXX.tmp``)."""
    return name.endswith(".tmp") and any(name.startswith(f".{n}.") for n in RUN_OUTPUTS)


def check_out(path: Path, overwrite: bool) -> None:
    """Refuse to write into a previous run, or into a folder of someone else's files, unless
    asked to replace what is there."""
    if path.exists() and not path.is_dir():
        raise ZooError(f"--out {path} is a file, not a directory")
    if path.is_dir():
        check_links(path)
    if overwrite:
        return
    if holds_run(path) and not completed_epoch(path):
        raise ZooError(
            f"--out {path} holds a config.toml that zoo did not write: it is not a zoo run; add "
            "--overwrite to replace it or choose another directory"
        )
    if holds_run(path):
        raise ZooError(
            f"--out {path} holds a previous run; add --overwrite to replace it or "
            f"use --resume {path} to continue it"
        )
    foreign = [] if started_run(path) else foreign_names(path)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if foreign[3:] else "")
        raise ZooError(
            f"--out {path} is not empty and is not a zoo run (it holds {shown}); choose another "
            "directory, or add --overwrite to write the run there (zoo's file names in it are "
            "replaced)"
        )


def check_links(path: Path) -> None:
    """Refuse a run directory in which a name zoo writes is a symbolic link: zoo never writes
    through a link there (a planted ``.zoo.lock`` link would have the lock overwrite its
    target). The run directory itself may be a link."""
    for name in (LOCK, *RUN_OUTPUTS):
        if (path / name).is_symlink():
            raise ZooError(
                f"{path / name} is a symbolic link; zoo never writes through links in a run "
                "directory: remove it (its target is left as it is)"
            )


def claim(path: Path, *, resume: bool, overwrite: bool) -> RunLock:
    """Lock the run directory for this process, then check that a new run may write there
    (under the lock, so two runs cannot both pass the check)."""
    lock = RunLock.acquire(path, resume=resume)
    try:
        if not resume:
            check_out(path, overwrite)
    except BaseException:
        lock.release()
        raise
    return lock


def clear_previous(path: Path) -> None:
    """Remove a previous run's outputs (only zoo's own files) before a new run writes."""
    for name in RUN_OUTPUTS:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def prepare(
    path: Path, values: dict[str, Any], version: str, *, resume: bool, overwrite: bool
) -> None:
    """Create (or take over) the run directory and write the resolved config: a new run
    clears a previous one it may replace (or the leftovers of a run that never completed an
    epoch); a resumed one removes its killed writes' leftovers."""
    if resume:
        remove_partial(path)
    else:
        if overwrite or started_run(path):
            clear_previous(path)
        remove_partial(path)
        path.mkdir(parents=True, exist_ok=True)
    write_config(path, values, version)
    record_start(path, resume=resume)


def read_record(path: Path) -> dict[str, Any]:
    """``run.json``, or {} where it is missing or unreadable (runs of older zoo versions)."""
    try:
        record = json.loads((path / RECORD).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def record_start(path: Path, *, resume: bool) -> None:
    """``run.json``: the first start (kept across resumes; unknown for runs of older zoo
    versions), each resume, and a failure recorded before (cleared: the run goes on). What
    ``zoo runs`` reads to date runs and tell a failed run from an interrupted one."""
    if resume:
        record = read_record(path)
        record["resumed"] = [*record.get("resumed", []), _now()]
        record.pop("failed", None)
    else:
        record = {"started": _now()}
    atomic_write(path / RECORD, (json.dumps(record, indent=2) + "\n").encode())


def _now() -> str:
    """Local time with its UTC offset, to the second (ISO 8601)."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def record_failure(path: Path, exc: BaseException) -> None:
    """Note in ``run.json`` why the run failed: an error, not an interrupt (exit code 130),
    which ``--resume`` simply continues. Best effort: the error itself is what gets reported."""
    if isinstance(exc, (KeyboardInterrupt, SystemExit)) or getattr(exc, "exit_code", 1) == 130:
        return
    lines = str(exc).splitlines()
    message = lines[0] if lines else ""
    if not isinstance(exc, ZooError):
        message = f"{type(exc).__name__}: {message}".rstrip(": ")
    record = read_record(path)
    record["failed"] = {"error": message, "time": _now()}
    with contextlib.suppress(OSError):
        atomic_write(path / RECORD, (json.dumps(record, indent=2) + "\n").encode())


class RunLock:
    """The exclusive right to write a run directory, held until ``release()`` or the end of
    the process (the kernel drops an ``flock`` with the last descriptor of its file)."""

    def __init__(self, path: Path, fd: int | None, created: bool) -> None:
        self.path, self.fd, self.created = path, fd, created

    @classmethod
    def acquire(cls, path: Path, *, resume: bool = False, what: str | None = None) -> RunLock:
        """Lock ``path`` (created if missing), or refuse in one line naming the holder; ``what``
        starts that line (default: ``--out PATH``, or ``--resume PATH: the run``)."""
        if path.exists() and not path.is_dir():
            raise ZooError(f"--out {path} is a file, not a directory")
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise Unwritable(f"cannot write the run directory {path}: {exc.strerror}") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - no flock on Windows: runs are not locked
            return cls(path, None, created)
        check_links(path)
        lock = path / LOCK
        while True:
            try:
                fd = _open_lock(lock)
            except FileNotFoundError:  # removed by its holder between two opens: again
                continue
            except ZooError:
                cls(path, None, created).release()
                raise
            except OSError as exc:  # a read-only run directory
                cls(path, None, created).release()
                raise Unwritable(f"cannot write the run directory {path}: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                what = what or (f"--resume {path}: the run" if resume else f"--out {path}")
                raise ZooError(
                    f"{what} is being written by another zoo process ({holder}); wait for it "
                    "to end, or choose another directory"
                ) from None
            except OSError:  # a file system without flock (some network mounts): not locked
                os.close(fd)
                return cls(path, None, created)
            # The holder we waited on may have removed the file meanwhile: lock the one there.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(["zoo", *sys.argv[1:]]),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(me) + "\n").encode())
        return cls(path, fd, created)

    def release(self) -> None:
        """Give the directory up; one this lock created and nothing was written to goes too."""
        if self.fd is not None:
            (self.path / LOCK).unlink(missing_ok=True)  # still ours: removed while locked
            os.close(self.fd)
            self.fd = None
        if self.created:
            with contextlib.suppress(OSError):  # only when empty: a run that wrote nothing
                self.path.rmdir()
            self.created = False


def _open_lock(lock: Path) -> int:
    """The lock file's descriptor: created new (``O_EXCL``), or the one there, never through a
    symbolic link (``O_NOFOLLOW``), and only a regular file with no other hard link (its
    content is replaced by the holder's name)."""
    flags = os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        try:
            return os.open(lock, flags | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            fd = os.open(lock, flags | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            check_links(lock.parent)  # names the link
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(st.st_mode) else "is not a regular file"
        raise ZooError(
            f"{lock} {what}; zoo never writes through links in a run directory: remove it"
        )
    return fd


class Unwritable(ZooError):
    """The run directory cannot be written (read-only, no permission): nothing was locked."""


def writer(path: Path) -> str | None:
    """Who is writing the run in ``path`` (as its lock file says), or None when no process
    holds its lock: probed with a non-blocking shared ``flock``, released at once. No lock
    file (zoo versions before it), or one that cannot be probed: no evidence, None."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path / LOCK, flags)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _holder(fd)
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _holder(fd: int) -> str:
    """Who holds a run's lock, as its lock file says: ``pid 123 on host: zoo train ...``."""
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {data['pid']} on {data['host']}, since {data['started']}: {data['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "it has not said which yet"


def write_config(path: Path, values: dict[str, Any], version: str) -> None:
    atomic_write(path / "config.toml", dump_toml({"zoo_version": version, **values}).encode())


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from the full history (resume-safe)."""
    lines = "".join(json.dumps(record) + "\n" for record in history)
    atomic_write(path / "metrics.jsonl", lines.encode())
    columns: list[str] = []
    for record in history:
        columns += [k for k in record if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(path / "metrics.csv", buffer.getvalue().encode())


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    atomic_write(path / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())


def epoch_checkpoints(path: Path) -> list[Path]:
    return sorted((path / "checkpoints").glob("epoch-*.safetensors"))


def remove_partial(path: Path) -> None:
    """Delete the temporary files that a killed run's atomic writes left behind (named
    ``.NAME.XXXX.tmp`` beside their target); only zoo's own names, completed files untouched."""
    found = [t for name in RUN_OUTPUTS for t in path.glob(f".{name}.*.tmp")]
    found += (path / "checkpoints").glob(".*.safetensors.*.tmp")
    for tmp in found:
        if tmp.is_file():
            tmp.unlink(missing_ok=True)

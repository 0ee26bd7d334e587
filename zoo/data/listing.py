"""Finding image files: by extension, recursively, only regular files (a FIFO named ``x.png``
would block its reader forever, so dangling links, FIFOs, sockets and devices are found by
``stat`` and reported), and the class folders of an image folder (``root/<class>/<image>``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import ZooError
from zoo.files.reading import special_file

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


@dataclass
class FolderListing:
    """Image files under ``root/<class>/``, with their labels; ``unreadable`` holds the
    image-named entries that are not regular files (with why), ``empty`` the class folders
    without any image."""

    files: list[Path]
    labels: list[int]
    classes: list[str]
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    empty: list[Path] = field(default_factory=list)

    def warn(self) -> None:
        """Say what was left out, one line per file or folder."""
        for path, reason in self.unreadable:
            print(f"warning: skipped unreadable image {path} ({reason})", file=sys.stderr)
        for path in self.empty:
            print(f"warning: class folder {path} holds no images; it is not used", file=sys.stderr)


def scan_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files under ``folder`` (by extension, recursively, hidden ones left out, sorted),
    and the image-named entries that are not regular files, with why. Symbolic links to files
    are followed; links to directories are not (as ``os.walk`` does)."""
    images: list[Path] = []
    special: list[tuple[Path, str]] = []
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:
            continue  # an unreadable sub-folder: os.walk skips it too
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and entry.name[0] != ".":
                path = Path(entry.path)
                # DirEntry.is_file() needs no system call except for links
                reason = None if entry.is_file() else special_file(path) or "not a regular file"
                if reason is None:
                    images.append(path)
                else:
                    special.append((path, reason))
    return sorted(images), sorted(special)


def folder_stamp(root: Path) -> str | None:
    """A digest of every entry under ``root``: its path, and for a file its size and
    modification time (a link's target's), as the decoded cache keys a folder's files. Any
    added, removed, renamed or rewritten file changes it; nothing is opened. None when ``root``
    is not a readable folder (loading it says why)."""
    import hashlib

    if not root.is_dir():
        return None
    h = hashlib.sha256()
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            return None
        for entry in entries:
            name = os.path.relpath(entry.path, root)
            if entry.is_dir(follow_symlinks=False):
                pending.append(Path(entry.path))
                h.update(f"d\0{name}\n".encode())
                continue
            try:
                st = entry.stat()
                h.update(f"f\0{name}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_mode}\n".encode())
            except OSError:
                h.update(f"x\0{name}\n".encode())
    return h.hexdigest()


def list_folder(root: Path, classes: list[str] | None = None) -> FolderListing:
    """Scan ``root/<class>/**/<image>``; classes are the sorted subfolders holding images."""
    if not root.exists():
        raise ZooError(f"data path {root} does not exist")
    if not root.is_dir():
        raise ZooError(f"data path {root} is not a folder")
    found: dict[str, list[Path]] = {}
    unreadable: list[tuple[Path, str]] = []
    empty: list[Path] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images, special = scan_images(sub)
        unreadable += special
        if images:
            found[sub.name] = images
        else:
            empty.append(sub)
    if classes is None:
        if not found:
            kinds = ", ".join(sorted(e.lstrip(".") for e in IMAGE_EXTENSIONS))
            raise ZooError(
                f"no class folders with images in {root}: expected {root}/<class>/<image> ({kinds})"
            )
        if len(found) == 1:
            raise ZooError(
                f"only one class ({next(iter(found))!r}) in {root}: "
                "classification needs at least two class folders"
            )
        classes = sorted(found)
    else:
        unknown = sorted(set(found) - set(classes))
        if unknown:
            raise ZooError(f"{root} has classes the training data lacks: {', '.join(unknown)}")
    files: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        files.extend(found.get(name, []))
        labels.extend([label] * len(found.get(name, [])))
    return FolderListing(files, labels, classes, unreadable, empty)

"""Reading submissions and writing reports, robust to any file a class can hand in.

* Paths are taken literally (a file named ``--json=x.ipynb`` is a file); folders are listed, never
  globbed through a shell.
* Only regular files are read: FIFOs, devices, sockets, folders named ``*.ipynb`` and symlinks that
  leave their folder get a row of their own saying why they were refused. Files are opened with
  ``O_NOFOLLOW | O_NONBLOCK`` and checked again after opening (nothing can swap in a FIFO between the
  check and the read).
* Size (``MAX_BYTES``) and JSON nesting (``MAX_DEPTH``) are limited before parsing.
* CSV cells starting with ``= + - @`` (or a tab / carriage return) are neutralised with a leading ``'``.
* Reports are written to a temporary file next to the target and renamed into place.
"""
from __future__ import annotations

import csv
import io
import json
import os
import stat
import tempfile
from pathlib import Path

from .wire import _depth_ok

MAX_BYTES = 32 * 2**20
MAX_DEPTH = 64


class Refused(Exception):
    """This file is not graded; the message says why (it becomes the row's note)."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def check_entry(path: Path, folder: Path | None) -> str | None:
    """``None`` when ``path`` may be read as a submission, else why not."""
    try:
        st = os.lstat(path)
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = Path(os.path.realpath(path))
            base = Path(os.path.realpath(folder if folder is not None else path.parent))
            tst = os.stat(target)
        except OSError:
            return "a broken symlink"
        if base not in target.parents:
            return f"a symlink that leaves its folder (-> {target})"
        if not stat.S_ISREG(tst.st_mode):
            return f"a symlink to {_kind(tst.st_mode)}"
        return None
    if not stat.S_ISREG(st.st_mode):
        return _kind(st.st_mode)
    return None


def collect(items: list[str]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(notebooks to grade, [(path, why refused)]) from files and folders given on the command line."""
    paths: list[Path] = []
    refused: list[tuple[Path, str]] = []
    for item in items:
        p = Path(item)
        try:
            st = os.lstat(p)
        except OSError:
            raise FileNotFoundError(f"no such notebook or folder: {item}") from None
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(p) as it:
                names = sorted(e.name for e in it)
            for name in names:
                if name.startswith(".") or not name.endswith(".ipynb"):
                    continue
                q = p / name
                why = check_entry(q, p)
                (refused.append((q, f"refused: {why}")) if why else paths.append(q))
        else:
            why = check_entry(p, None)
            (refused.append((p, f"refused: {why}")) if why else paths.append(p))
    return paths, refused


def read_notebook(path: Path) -> dict:
    """The notebook's JSON, read safely; raises :class:`Refused` with the reason otherwise."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    real = os.path.realpath(path) if os.path.islink(path) else path
    try:
        fd = os.open(real, flags)
    except OSError as err:
        raise Refused(f"refused: cannot be opened ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(f"refused: {_kind(st.st_mode)}")
        if st.st_size > MAX_BYTES:
            raise Refused(f"refused: {st.st_size} bytes, over the {MAX_BYTES // 2**20} MiB limit")
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, 2**20)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_BYTES:
                raise Refused(f"refused: over the {MAX_BYTES // 2**20} MiB limit")
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8", "replace")
    if not _depth_ok(text):
        raise Refused(f"unreadable notebook: JSON nested deeper than {MAX_DEPTH} levels")
    try:
        nb = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise Refused(f"unreadable notebook: {type(err).__name__}: {str(err)[:120]}") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells", []), list):
        raise Refused("unreadable notebook: not a notebook (no list of cells)")
    return nb


def neutralise(value) -> str:
    """A CSV cell that a spreadsheet will not read as a formula."""
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def write_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([neutralise(h) for h in header])
    for row in rows:
        writer.writerow([neutralise(c) for c in row])
    return buf.getvalue()

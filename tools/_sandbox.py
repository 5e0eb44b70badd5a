"""`Sandbox`: one directory the file tools cannot leave.

A path is walked from the root one name at a time, each opened relative to
its parent's file descriptor without following links (`O_NOFOLLOW`), so a
name swapped for a link between a check and its use is found, not followed.
A link met on the way is followed only by resolving it and checking that it
stays inside the root, then walking the resolved path again the same way. The
directory or file finally opened is checked once more by its real path (from
`/proc/self/fd`, where there is one). Only regular files and directories are
opened: a FIFO, a socket or a device is refused before it is opened.

What it cannot see: a hard link inside the root to a file outside it (the
operating system does not tell them apart; Linux's `protected_hardlinks`
keeps users from making one to a file they do not own), and a directory moved
out of the root while a walk holds it open, where `/proc` is missing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from agentkit.tools._refusal import ToolRefused

__all__ = ["DIRECTORY", "FILE", "Sandbox"]

DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""How a directory on the way is opened."""
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
"""How a file is opened to be read (O_NONBLOCK: a FIFO swapped in at the last moment does not hang the call)."""
_MAX_LINKS = 40
"""Links followed in one walk (the kernel's own limit), which also ends a walk that keeps being raced."""


def kind(mode: int) -> str:
    """The kind of file a stat mode describes, in words."""
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


class Sandbox:
    """The directory `root` (resolved once, now), in which paths are opened without leaving it.

    Raises:
        ValueError: `root` does not exist or is not a directory.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        try:
            real = Path(root).resolve(strict=True)
        except (FileNotFoundError, RuntimeError) as exc:
            raise ValueError(f"sandbox root {os.fspath(root)!r} does not exist ({exc})") from None
        if not real.is_dir():
            raise ValueError(f"sandbox root {os.fspath(root)!r} is not a directory")
        self.root = str(real)

    def names(self, path: str) -> list[str]:
        """`path` (relative to the root, or absolute inside it) as the names to walk from the root."""
        if "\0" in path:
            raise ToolRefused(f"{path!r} contains a NUL character")
        pure = PurePosixPath(path)
        if pure.is_absolute():
            try:
                pure = pure.relative_to(self.root)
            except ValueError:
                raise ToolRefused(
                    f"{path} is an absolute path outside the sandbox; use a path relative to its root"
                ) from None
        names = [name for name in pure.parts if name != "."]
        if ".." in names:
            raise ToolRefused(f"{path} contains '..'; paths are relative to the sandbox root and stay under it")
        return names

    @contextlib.contextmanager
    def directory(self, path: str, *, create: bool = False) -> Iterator[int]:
        """A descriptor of the directory at `path` (made, with its parents, when `create`)."""
        fd = self._walk(path, self.names(path), create=create)
        try:
            yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def parent(self, path: str, *, create: bool = False) -> Iterator[tuple[int, str]]:
        """A descriptor of the directory `path` is in, and its last name (not followed, maybe absent)."""
        names = self.names(path)
        if not names:
            raise ToolRefused(f"{path!r} is the sandbox root itself, a directory")
        fd = self._walk(path, names[:-1], create=create)
        try:
            yield fd, names[-1]
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def open_file(self, path: str) -> Iterator[tuple[int, os.stat_result]]:
        """A read-only descriptor of the regular file at `path`, and its stat."""
        names = self.names(path)
        for _ in range(_MAX_LINKS):
            if not names:
                raise IsADirectoryError(f"{path} is a directory (the sandbox root), not a file")
            parent = self._walk(path, names[:-1])
            try:
                info = _lstat(parent, names[-1], path)
                if stat.S_ISLNK(info.st_mode):
                    names = self._follow(path, names, len(names))
                    continue
                if not stat.S_ISREG(info.st_mode):
                    what = kind(info.st_mode)
                    if what == "directory":
                        raise IsADirectoryError(f"{path} is a directory, not a file")
                    raise ToolRefused(f"{path} is a {what}; only regular files are read")
                fd = _open(names[-1], FILE, parent, path)
            finally:
                os.close(parent)
            try:
                opened = os.fstat(fd)
                if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                    raise ToolRefused(f"{path} changed while it was being opened")
                self._check_inside(fd, path)
                yield fd, opened
            finally:
                os.close(fd)
            return
        raise ToolRefused(f"{path} goes through more than {_MAX_LINKS} symbolic links")

    def _walk(self, path: str, names: list[str], *, create: bool = False) -> int:
        """Open the directory `names` lead to from the root, following only links that stay inside it."""
        for _ in range(_MAX_LINKS):
            fd = os.open(self.root, DIRECTORY)
            try:
                for depth, name in enumerate(names, 1):
                    if create:
                        with contextlib.suppress(FileExistsError):
                            os.mkdir(name, dir_fd=fd)
                    try:
                        step = os.open(name, DIRECTORY, dir_fd=fd)
                    except OSError as exc:
                        if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
                            raise
                        where = "/".join(names[:depth])
                        what = kind(_lstat(fd, name, where).st_mode)
                        if what != "symbolic link":
                            raise NotADirectoryError(f"{where} is a {what}, not a directory") from None
                        names = self._follow(path, names, depth)
                        break
                    os.close(fd)
                    fd = step
                else:
                    self._check_inside(fd, path)
                    return fd
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        raise ToolRefused(f"{path} goes through more than {_MAX_LINKS} symbolic links")

    def _follow(self, path: str, names: list[str], depth: int) -> list[str]:
        """The names to walk instead of `names` when `names[:depth]` is a link: its target's, if inside the root."""
        link = os.path.join(self.root, *names[:depth])
        target = os.path.realpath(link)
        if not self._inside(target):
            shown = "/".join(names[:depth])
            raise ToolRefused(f"{shown} is a symbolic link that leads outside the sandbox root (in {path})")
        inside = os.path.relpath(target, self.root)
        return ([] if inside == "." else inside.split(os.sep)) + names[depth:]

    def _inside(self, real: str) -> bool:
        return real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)

    def _check_inside(self, fd: int, path: str) -> None:
        """Refuse an opened descriptor whose real path is outside the root (moved out meanwhile)."""
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # no /proc: the walk itself is the check
            return
        if not self._inside(real):
            raise ToolRefused(f"{path} is no longer inside the sandbox root (moved while it was opened)")


def _lstat(dir_fd: int, name: str, path: str) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or directory in the sandbox") from None


def _open(name: str, flags: int, dir_fd: int, path: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ToolRefused(f"{path} changed into a symbolic link while it was being opened") from None
        raise

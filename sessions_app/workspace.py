"""A session's files on the host, and the one way in: every path is opened beneath a directory
fd of the workspace root, and no symlink is followed out of it, whatever renames run meanwhile.

A shell command in the sandbox can rename, swap (renameat2 RENAME_EXCHANGE) and relink anything
in its workspace at any moment, so a path checked first and opened later may be another path by
then. Nothing here checks and then opens by name: a path is resolved one component at a time
relative to directory fds already opened inside the workspace, with `openat2(RESOLVE_BENEATH)`
where the kernel has it and a component-by-component `O_NOFOLLOW` walk otherwise (and whenever
`openat2` refuses, to tell a way out from an absolute link to `/workspace/...`).

Symlinks that stay inside the workspace work. An absolute link is read as the sandbox reads it:
`/workspace/...` is the workspace root, any other absolute target is outside and refused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import posixpath
import stat
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

WORKSPACE_MOUNT = "/workspace"
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
# Linux's own limit on symlinks followed in one lookup.
MAX_SYMLINK_HOPS = 40
# A lookup that keeps meeting a component changing under it gives up (and refuses) after this.
MAX_RACE_RETRIES = 16
# Walks keep one fd per level open: deeper directories are not descended into (see usage()).
MAX_WALK_DEPTH = 128
# rmtree keeps at most this many fds open; deeper subtrees are moved up and removed later.
RMTREE_DEPTH = 64

_DIR_PATH = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Opened by _open, which follows links inside the workspace (and adds O_NOFOLLOW where it must).
_DIR_OPEN = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK | os.O_CLOEXEC
# A directory entered by name during a walk or a removal: never through a link.
_DIR_READ = _DIR_OPEN | os.O_NOFOLLOW
# O_NONBLOCK: a FIFO planted in the workspace must not hang a server thread on open.
_FILE_READ = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class PathRefused(Exception):
    """The path is unusable or leads outside the workspace; str(exc) is the text for the model
    and for API clients (it never shows a host path)."""


class LinkLoop(PathRefused):
    """Too many symbolic links on the way: a loop, or a chain too long to follow."""


class WorkspaceQuotaExceeded(Exception):
    """A write that would take the workspace over WORKSPACE_MAX_BYTES."""

    def __init__(self, message: str, *, used: int, limit: int, size: int = 0):
        super().__init__(message)
        self.used, self.limit, self.size = used, limit, size


# Where workspaces live.


def session_workspace(session) -> Path:
    return Path(settings.WORKSPACES_ROOT) / str(session.user_id) / str(session.id)


def workspace_create(session) -> Path:
    path = session_workspace(session)
    path.mkdir(parents=True, exist_ok=True)
    return path


def workspace_tree_remove(path: Path) -> None:
    """Removes a whole workspace directory by fds: links inside are removed, never followed."""
    path = Path(path)
    try:
        parent = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        _rmtree_at(parent, path.name)
    except FileNotFoundError:
        pass
    finally:
        os.close(parent)


# Paths as users and the model write them.


def not_in_workspace(shown: str) -> str:
    # gemini-cli's wording, so the model reacts to it as it does there.
    return (
        f'Path not in workspace: Attempted path "{shown}" resolves outside the allowed '
        f"workspace directories: {WORKSPACE_MOUNT}"
    )


def link_loop(shown: str) -> str:
    return f"Too many levels of symbolic links: {shown}"


def is_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def virtual_path(raw: str) -> str:
    """Lexically normalise a path to its /workspace form, without touching the disk."""
    if "\x00" in raw:
        raise PathRefused("Path contains a NUL byte, which is not allowed in file paths.")
    try:
        raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise PathRefused("Path contains characters that cannot be part of a file name.") from None
    joined = raw if raw.startswith("/") else posixpath.join(WORKSPACE_MOUNT, raw)
    # normpath keeps a leading "//" (POSIX allows it to mean something else), so fold it.
    normalized = "/" + posixpath.normpath(joined).lstrip("/")
    if not is_inside(normalized, WORKSPACE_MOUNT):
        raise PathRefused(not_in_workspace(normalized))
    return normalized


def relative_path(raw: str) -> str:
    """The path relative to the workspace root: "" for the root itself, else "a/b.txt"."""
    return virtual_path(raw)[len(WORKSPACE_MOUNT) :].lstrip("/")


def virtual_of(relative: str) -> str:
    return f"{WORKSPACE_MOUNT}/{relative}" if relative else WORKSPACE_MOUNT


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _mount_parts(target: str) -> list[str] | None:
    """An absolute link target as the sandbox sees it: the parts below /workspace, or None."""
    parts = _parts(target)
    if not parts or parts[0] != WORKSPACE_MOUNT.strip("/"):
        return None
    return parts[1:]


# openat2(2), probed once.

_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_BENEATH = 0x08
_OPENAT2_SYSCALL = {"x86_64": 437, "aarch64": 437}.get(platform.machine())


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(
        ctypes.c_long(_OPENAT2_SYSCALL),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return fd


def _openat2_probe() -> bool:
    if _OPENAT2_SYSCALL is None:
        return False
    try:
        os.close(_openat2(-100, ".", os.O_PATH | os.O_CLOEXEC, _RESOLVE_BENEATH))  # AT_FDCWD
    except OSError:
        return False  # ENOSYS (kernel before 5.6) or a seccomp filter that refuses it
    return True


# Read at each lookup, so the walk can also be tested on a kernel that has openat2.
OPENAT2 = _openat2_probe()


# What operations give back.


@dataclass(frozen=True)
class ListEntry:
    name: str
    lstat: os.stat_result
    # The followed stat: the entry's own for non-links, the target's for links that stay inside.
    stat: os.stat_result | None
    link: str | None  # None (not a link), "inside", "outside" or "broken"

    @property
    def is_dir(self) -> bool:
        return self.stat is not None and stat.S_ISDIR(self.stat.st_mode)


@dataclass(frozen=True)
class WalkEntry:
    path: str  # relative to the directory walked
    relative: str  # relative to the workspace root (the real path, links in the top resolved)
    lstat: os.stat_result


@dataclass(frozen=True)
class WriteOutcome:
    created: bool
    stat: os.stat_result


@dataclass
class _Located:
    parent: int  # an fd of the directory holding the entry, owned by the caller
    name: str | None  # None: the workspace root itself
    parts: tuple[str, ...] | None  # the real path from the root, when the walk knows it


class Workspace:
    """One session workspace, reached only through fds beneath its root.

    Methods take paths as users and the model write them (relative, or under /workspace) and
    raise PathRefused for a way out, OSError (FileNotFoundError, NotADirectoryError, ...) as the
    kernel gives them, and WorkspaceQuotaExceeded for writes over the quota. One object serves
    one call: it caches the workspace's usage once measured.
    """

    def __init__(self, root: Path | str, *, max_bytes: int | None = None):
        self.root = Path(root)
        if max_bytes is None:
            max_bytes = int(getattr(settings, "WORKSPACE_MAX_BYTES", DEFAULT_MAX_BYTES))
        self.max_bytes = max_bytes
        self._usage: int | None = None
        self._usage_complete = True

    # Lexical.

    @staticmethod
    def virtual(raw: str) -> str:
        return virtual_path(raw)

    @staticmethod
    def relative(raw: str) -> str:
        return relative_path(raw)

    # Lookups.

    @contextmanager
    def _root_fd(self):
        fd = os.open(self.root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            yield fd
        finally:
            os.close(fd)

    def _walk(
        self, root_fd: int, relative: str, shown: str, *, follow_final: bool, create_dirs: bool
    ) -> _Located:
        """Resolve by hand, one component at a time, each opened O_NOFOLLOW beneath the last.

        ".." goes back to the directory the walk came from (never the entry named ".."), so it
        cannot leave the root; a link's target continues the walk from where the link is, or
        from the root for /workspace/...; any other absolute target is a way out.
        """
        dirs = [os.dup(root_fd)]
        names: list[str] = []
        pending = deque(_parts(relative))
        hops = retries = 0

        def again(part: str) -> None:
            nonlocal retries
            retries += 1
            if retries > MAX_RACE_RETRIES:
                raise PathRefused(not_in_workspace(shown))
            pending.appendleft(part)

        def take(name: str | None) -> _Located:
            parent = dirs.pop()
            return _Located(parent, name, (*names, name) if name else tuple(names))

        try:
            while pending:
                part = pending.popleft()
                if part == "..":
                    if len(dirs) == 1:
                        raise PathRefused(not_in_workspace(shown))
                    os.close(dirs.pop())
                    names.pop()
                    continue
                here, last = dirs[-1], not pending
                if last and not follow_final:
                    return take(part)
                try:
                    info = os.stat(part, dir_fd=here, follow_symlinks=False)
                except FileNotFoundError:
                    if last:
                        return take(part)
                    if not create_dirs:
                        raise
                    try:
                        os.mkdir(part, 0o755, dir_fd=here)
                    except FileExistsError:
                        again(part)  # made meanwhile: look at it again
                        continue
                    pending.appendleft(part)
                    continue
                if stat.S_ISLNK(info.st_mode):
                    hops += 1
                    if hops > MAX_SYMLINK_HOPS:
                        raise LinkLoop(link_loop(shown))
                    try:
                        target = os.readlink(part, dir_fd=here)
                    except OSError as exc:
                        if exc.errno not in (errno.ENOENT, errno.EINVAL):
                            raise
                        again(part)  # no longer a link
                        continue
                    if target.startswith("/"):
                        inside = _mount_parts(target)
                        if inside is None:
                            raise PathRefused(not_in_workspace(shown))
                        while len(dirs) > 1:
                            os.close(dirs.pop())
                        names.clear()
                        pending.extendleft(reversed(inside))
                    else:
                        pending.extendleft(reversed(_parts(target)))
                    continue
                if last:
                    return take(part)
                if not stat.S_ISDIR(info.st_mode):
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
                try:
                    fd = os.open(part, _DIR_PATH, dir_fd=here)
                except OSError as exc:
                    if exc.errno not in (errno.ENOTDIR, errno.ELOOP, errno.ENOENT):
                        raise
                    again(part)  # swapped for a link or a file since the stat
                    continue
                dirs.append(fd)
                names.append(part)
            if len(dirs) > 1:  # the path ended on ".." or a link to a directory above
                os.close(dirs.pop())
                return take(names.pop())
            return take(None)
        finally:
            for fd in dirs:
                os.close(fd)

    def _openat2_beneath(self, root_fd: int, relative: str, flags: int) -> int | None:
        """openat2 beneath the root; None when the walk has to decide (a way out, an absolute
        link that may lead to /workspace/..., a loop, or renames racing the lookup)."""
        if not relative:
            return os.open(".", flags, dir_fd=root_fd)
        for _ in range(3):
            try:
                return _openat2(root_fd, relative, flags, _RESOLVE_BENEATH | _RESOLVE_NO_MAGICLINKS)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EINTR):
                    continue
                if exc.errno in (errno.EXDEV, errno.ELOOP):
                    return None
                raise
        return None

    def _locate(
        self,
        root_fd: int,
        relative: str,
        shown: str,
        *,
        follow_final: bool = True,
        create_dirs: bool = False,
    ) -> _Located:
        """The directory holding the entry (an fd) and the entry's name in it.

        With follow_final, a link in the last place is followed (inside the workspace), so the
        name is never a link unless one was swapped in since; callers use it with O_NOFOLLOW.
        """
        if relative and OPENAT2:
            head, _, name = relative.rpartition("/")
            try:
                parent = self._openat2_beneath(root_fd, head, os.O_PATH | os.O_DIRECTORY)
            except FileNotFoundError:
                if not create_dirs:
                    raise
                parent = None
            if parent is not None:
                if not follow_final:
                    return _Located(parent, name, None)
                try:
                    info = os.stat(name, dir_fd=parent, follow_symlinks=False)
                except FileNotFoundError:
                    return _Located(parent, name, None)
                except BaseException:
                    os.close(parent)
                    raise
                if not stat.S_ISLNK(info.st_mode):
                    return _Located(parent, name, None)
                os.close(parent)
        return self._walk(
            root_fd, relative, shown, follow_final=follow_final, create_dirs=create_dirs
        )

    def _open(self, root_fd: int, relative: str, shown: str, flags: int) -> int:
        """Open the path, following links inside the workspace."""
        if OPENAT2:
            fd = self._openat2_beneath(root_fd, relative, flags)
            if fd is not None:
                return fd
        for _ in range(MAX_RACE_RETRIES):
            located = self._walk(root_fd, relative, shown, follow_final=True, create_dirs=False)
            try:
                if located.name is None:
                    return os.open(".", flags, dir_fd=located.parent)
                try:
                    fd = os.open(located.name, flags | os.O_NOFOLLOW, dir_fd=located.parent)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    # O_DIRECTORY | O_NOFOLLOW says ENOTDIR for a link too: only a file (or
                    # the like) that is still there is really not a directory.
                    if exc.errno == errno.ENOTDIR and not _link_or_dir(located):
                        raise
                    continue  # a link was swapped in after the walk: walk again
                if flags & os.O_PATH and stat.S_ISLNK(os.fstat(fd).st_mode):
                    os.close(fd)
                    continue
                return fd
            finally:
                os.close(located.parent)
        raise PathRefused(not_in_workspace(shown))

    # Reads.

    def check(self, raw: str) -> None:
        """Raise PathRefused when the path leads out; a path that does not exist (yet) passes,
        and other OS errors are left for the operation itself to report."""
        relative = relative_path(raw)
        with self._root_fd() as root_fd:
            try:
                os.close(self._open(root_fd, relative, virtual_of(relative), os.O_PATH))
            except OSError:
                pass

    def stat(self, raw: str, *, follow: bool = True) -> os.stat_result:
        relative = relative_path(raw)
        shown = virtual_of(relative)
        with self._root_fd() as root_fd:
            if follow:
                fd = self._open(root_fd, relative, shown, os.O_PATH)
                try:
                    return os.fstat(fd)
                finally:
                    os.close(fd)
            located = self._locate(root_fd, relative, shown, follow_final=False)
            try:
                if located.name is None:
                    return os.fstat(located.parent)
                return os.stat(located.name, dir_fd=located.parent, follow_symlinks=False)
            finally:
                os.close(located.parent)

    def exists(self, raw: str) -> bool:
        """True when the path names something inside (links followed); False for a way out."""
        try:
            self.stat(raw)
        except (OSError, PathRefused):
            return False
        return True

    def lexists(self, raw: str) -> bool:
        """True when the entry itself exists (a link counts, wherever it points); raises
        PathRefused when a directory on the way leads out."""
        try:
            self.stat(raw, follow=False)
        except OSError:
            return False
        return True

    def is_dir(self, raw: str) -> bool:
        try:
            return stat.S_ISDIR(self.stat(raw).st_mode)
        except (OSError, PathRefused):
            return False

    def is_file(self, raw: str) -> bool:
        try:
            return stat.S_ISREG(self.stat(raw).st_mode)
        except (OSError, PathRefused):
            return False

    def real_path(self, raw: str) -> str:
        """The /workspace form of the path with every link on the way resolved."""
        relative = relative_path(raw)
        with self._root_fd() as root_fd:
            located = self._walk(
                root_fd, relative, virtual_of(relative), follow_final=True, create_dirs=False
            )
            os.close(located.parent)
        return virtual_of("/".join(located.parts or ()))

    def real_dir(self, raw: str) -> str:
        """real_path for a directory that exists; FileNotFoundError / NotADirectoryError else."""
        real = self.real_path(raw)
        if not stat.S_ISDIR(self.stat(real).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        return real

    def open_file(self, raw: str) -> tuple[int, os.stat_result]:
        """An fd open for reading and its fstat; the caller checks the type and closes it."""
        relative = relative_path(raw)
        with self._root_fd() as root_fd:
            fd = self._open(root_fd, relative, virtual_of(relative), _FILE_READ)
        try:
            return fd, os.fstat(fd)
        except BaseException:
            os.close(fd)
            raise

    def read_head(self, raw: str, limit: int) -> bytes:
        """Up to `limit` bytes of a regular file."""
        fd, info = self.open_file(raw)
        with os.fdopen(fd, "rb") as handle:
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            if not stat.S_ISREG(info.st_mode):
                raise OSError(errno.EINVAL, "Not a regular file")
            return handle.read(limit)

    def listdir(self, raw: str) -> list[ListEntry]:
        """The directory's entries, unsorted; links are judged, never followed out."""
        relative = relative_path(raw)
        shown = virtual_of(relative)
        with self._root_fd() as root_fd:
            fd = self._open(root_fd, relative, shown, _DIR_OPEN)
        found: list[tuple[str, os.stat_result]] = []
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    try:
                        found.append(
                            (entry.name, os.stat(entry.name, dir_fd=fd, follow_symlinks=False))
                        )
                    except FileNotFoundError:
                        continue
        finally:
            os.close(fd)
        listed = []
        for name, info in found:
            if not stat.S_ISLNK(info.st_mode):
                listed.append(ListEntry(name, info, info, None))
                continue
            child = f"{relative}/{name}" if relative else name
            try:
                listed.append(ListEntry(name, info, self.stat(child), "inside"))
            except LinkLoop:
                listed.append(ListEntry(name, info, None, "broken"))
            except PathRefused:
                listed.append(ListEntry(name, info, None, "outside"))
            except OSError:
                listed.append(ListEntry(name, info, None, "broken"))
        return listed

    def walk(
        self, raw: str = "", *, excluded_dirs: frozenset[str] = frozenset()
    ) -> Iterator[WalkEntry]:
        """Every entry under the directory (its lstat), a directory's own entries sorted before
        its subdirectories' ones; directories named in excluded_dirs are neither yielded nor
        entered.

        Directories are entered by fd with O_NOFOLLOW, so a link to a directory is yielded as an
        entry, never descended into, even if swapped in mid-walk. Directories deeper than
        MAX_WALK_DEPTH below the top are not entered.
        """
        top = self.real_dir(raw)
        top_relative = relative_path(top)
        with self._root_fd() as root_fd:
            fd = self._open(root_fd, top_relative, top, _DIR_OPEN)
        try:
            prefix = f"{top_relative}/" if top_relative else ""
            yield from self._walk_dir(fd, "", prefix, 0, excluded_dirs)
        finally:
            os.close(fd)

    def _walk_dir(
        self, fd: int, path: str, root_prefix: str, depth: int, excluded: frozenset[str]
    ) -> Iterator[WalkEntry]:
        entries = []
        with os.scandir(fd) as scan:
            for entry in scan:
                try:
                    entries.append(
                        (entry.name, os.stat(entry.name, dir_fd=fd, follow_symlinks=False))
                    )
                except FileNotFoundError:
                    continue
        entries.sort()
        subdirs = []
        for name, info in entries:
            if stat.S_ISDIR(info.st_mode):
                if name in excluded:
                    continue
                subdirs.append(name)
            yield WalkEntry(path + name, root_prefix + path + name, info)
        if subdirs and depth >= MAX_WALK_DEPTH:
            self._usage_complete = False
            return
        for name in subdirs:
            try:
                child = os.open(name, _DIR_READ, dir_fd=fd)
            except OSError:
                continue  # gone, or swapped for a link or a file since the listing
            try:
                yield from self._walk_dir(child, f"{path}{name}/", root_prefix, depth + 1, excluded)
            finally:
                os.close(child)

    # Quota.

    def usage(self) -> int:
        """Bytes used: the apparent size of everything below the root (files, directories,
        links), as `du --apparent-size` counts it, each inode once."""
        if self._usage is None:
            self._usage_complete = True
            seen: set[tuple[int, int]] = set()
            total = 0
            for entry in self.walk(""):
                info = entry.lstat
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_size
            self._usage = total
        return self._usage

    def over_quota(self) -> str | None:
        """Why the workspace is over its quota now, or None."""
        if self.max_bytes <= 0:
            return None
        used = self.usage()
        if not self._usage_complete:
            return _too_deep_text()
        if used > self.max_bytes:
            return (
                f"Workspace quota exceeded: the workspace uses {used} bytes, over its limit of "
                f"{self.max_bytes} bytes. Its files are kept, but writes are refused until "
                "usage drops below the limit: delete files to free space."
            )
        return None

    def _quota_check(self, shown: str, size: int, replacing: int) -> None:
        if self.max_bytes <= 0:
            return
        used = self.usage()
        after = used - replacing + size
        if not self._usage_complete:
            raise WorkspaceQuotaExceeded(
                _too_deep_text(), used=used, limit=self.max_bytes, size=size
            )
        # A write that shrinks a file is let through: it is how usage drops.
        if after > self.max_bytes and size >= replacing:
            raise WorkspaceQuotaExceeded(
                f"Workspace quota exceeded: writing {shown} ({size} bytes) would bring the "
                f"workspace to {after} bytes, over its limit of {self.max_bytes} bytes. Delete "
                "files to free space.",
                used=used,
                limit=self.max_bytes,
                size=size,
            )
        self._usage = after

    # Writes.

    def write_bytes(self, raw: str, data: bytes) -> WriteOutcome:
        """Write the whole file: into a temporary name beside it, then renamed into place, so a
        reader never sees half a file. Missing parent directories are made; a link in the last
        place (inside the workspace) is written through."""
        relative = relative_path(raw)
        shown = virtual_of(relative)
        if not relative:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        try:
            current = self.stat(relative)
        except (FileNotFoundError, NotADirectoryError):
            current = None
        if current is not None and stat.S_ISDIR(current.st_mode):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        replacing = (
            current.st_size
            if current is not None and stat.S_ISREG(current.st_mode) and current.st_nlink == 1
            else 0
        )
        self._quota_check(shown, len(data), replacing)
        with self._root_fd() as root_fd:
            located = self._locate(root_fd, relative, shown, create_dirs=True)
        try:
            if located.name is None:
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
            return _replace_file(located.parent, located.name, data)
        finally:
            os.close(located.parent)

    def mkdirs(self, raw: str) -> None:
        relative = relative_path(raw)
        with self._root_fd() as root_fd:
            located = self._locate(root_fd, relative, virtual_of(relative), create_dirs=True)
        try:
            if located.name is None:
                return
            try:
                os.mkdir(located.name, 0o755, dir_fd=located.parent)
            except FileExistsError:
                info = os.stat(located.name, dir_fd=located.parent, follow_symlinks=False)
                if not stat.S_ISDIR(info.st_mode):
                    raise
        finally:
            os.close(located.parent)

    def remove(self, raw: str) -> None:
        """Remove a file, a link (never what it points to) or a directory tree, by fds."""
        relative = relative_path(raw)
        if not relative:
            raise PathRefused("The workspace itself cannot be removed.")
        with self._root_fd() as root_fd:
            located = self._locate(root_fd, relative, virtual_of(relative), follow_final=False)
        try:
            if located.name is None:
                raise PathRefused("The workspace itself cannot be removed.")
            os.stat(located.name, dir_fd=located.parent, follow_symlinks=False)  # ENOENT: say so
            _remove_entry(located.parent, located.name)
        finally:
            os.close(located.parent)

    def rename(self, source: str, target: str) -> None:
        """Rename an entry (a link is moved itself); missing parents of the target are made."""
        source_relative, target_relative = relative_path(source), relative_path(target)
        if not source_relative or not target_relative:
            raise PathRefused("The workspace itself cannot be renamed.")
        with self._root_fd() as root_fd:
            src = self._locate(
                root_fd, source_relative, virtual_of(source_relative), follow_final=False
            )
            try:
                dst = self._locate(
                    root_fd,
                    target_relative,
                    virtual_of(target_relative),
                    follow_final=False,
                    create_dirs=True,
                )
            except BaseException:
                os.close(src.parent)
                raise
        try:
            if src.name is None or dst.name is None:
                raise PathRefused("The workspace itself cannot be renamed.")
            os.rename(src.name, dst.name, src_dir_fd=src.parent, dst_dir_fd=dst.parent)
        finally:
            os.close(src.parent)
            os.close(dst.parent)


def _too_deep_text() -> str:
    return (
        f"Workspace quota exceeded: directories nested deeper than {MAX_WALK_DEPTH} levels "
        "cannot be measured, so writes are refused until they are flattened or deleted."
    )


def _link_or_dir(located: _Located) -> bool:
    try:
        info = os.stat(located.name, dir_fd=located.parent, follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISLNK(info.st_mode) or stat.S_ISDIR(info.st_mode)


def _replace_file(parent: int, name: str, data: bytes) -> WriteOutcome:
    try:
        old = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and stat.S_ISDIR(old.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
    # A short name of our own: the real name may already be close to NAME_MAX.
    temporary = f".gw-{uuid.uuid4().hex[:16]}.tmp"
    fd = os.open(
        temporary,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=parent,
    )
    try:
        try:
            if old is not None and stat.S_ISREG(old.st_mode):
                os.fchmod(fd, stat.S_IMODE(old.st_mode))
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            written = os.fstat(fd)
        finally:
            os.close(fd)
        os.rename(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        try:
            os.unlink(temporary, dir_fd=parent)
        except OSError:
            pass
        raise
    return WriteOutcome(created=old is None, stat=written)


def _rmtree_at(parent: int, name: str) -> None:
    """Remove the directory `name` in `parent` and everything in it, never following a link.

    Subtrees deeper than RMTREE_DEPTH are moved up into the directory being removed and
    removed from there on a later pass, so a tree of any depth is removed with bounded fds.
    """
    top = os.open(name, _DIR_READ, dir_fd=parent)
    try:
        for _ in range(100_000):
            if not _clear(top, top, 0):
                break
    finally:
        os.close(top)
    os.rmdir(name, dir_fd=parent)


def _clear(top: int, directory: int, depth: int) -> bool:
    """Remove what `directory` holds; True when it held anything."""
    with os.scandir(directory) as scan:
        names = [entry.name for entry in scan]
    for name in names:
        _remove_in(top, directory, name, depth)
    return bool(names)


def _remove_entry(directory: int, name: str) -> None:
    """Remove the file, link or directory tree `name` in `directory`; gone already is fine."""
    _remove_in(None, directory, name, 0)


def _remove_in(top: int | None, directory: int, name: str, depth: int) -> None:
    for _ in range(MAX_RACE_RETRIES):
        try:
            info = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            return
        try:
            if not stat.S_ISDIR(info.st_mode):
                os.unlink(name, dir_fd=directory)
            elif top is None:
                _rmtree_at(directory, name)
            elif depth >= RMTREE_DEPTH:
                os.rename(name, f".gw-rm-{uuid.uuid4().hex}", src_dir_fd=directory, dst_dir_fd=top)
            else:
                child = os.open(name, _DIR_READ, dir_fd=directory)
                try:
                    for _ in range(MAX_RACE_RETRIES):
                        if not _clear(top, child, depth + 1):
                            break
                finally:
                    os.close(child)
                os.rmdir(name, dir_fd=directory)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            # Swapped between the stat and the call (a directory for a file or a link, or back).
            if exc.errno not in (errno.EISDIR, errno.ENOTDIR, errno.ELOOP, errno.EPERM):
                raise
    raise OSError(errno.EBUSY, "The entry kept changing while it was being removed")

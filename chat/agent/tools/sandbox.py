"""The limits a sandboxed shell command runs under, and the host uid it runs as."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

logger = logging.getLogger(__name__)

# The uid and gid a command sees inside the sandbox (`id -u`): never root.
SANDBOX_UID = 1000
# How deep the ownership hand-over descends; deeper entries keep their owner.
HAND_OVER_MAX_DEPTH = 256

_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class SandboxRefused(Exception):
    """The sandbox cannot run commands for this workspace; the message is for the caller."""


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int
    max_processes: int
    cpu_seconds: int
    max_file_bytes: int
    tmp_bytes: int


def sandbox_limits() -> SandboxLimits:
    return SandboxLimits(
        memory_bytes=int(settings.SANDBOX_MEMORY_BYTES),
        max_processes=int(settings.SANDBOX_MAX_PROCESSES),
        cpu_seconds=int(settings.SANDBOX_CPU_SECONDS),
        max_file_bytes=int(settings.SANDBOX_MAX_FILE_BYTES),
        tmp_bytes=int(settings.SANDBOX_TMP_BYTES),
    )


def limit_argv(prlimit: str, limits: SandboxLimits) -> list[str]:
    """prlimit's command line: set the limits, then run what follows `--`.

    It runs inside the sandbox, after bwrap has made the user namespace: the kernel counts
    RLIMIT_NPROC per user *and* namespace, and bwrap starts without the limit, so the count is
    this command's processes only and one session's fork bomb never stops another's commands.
    RLIMIT_DATA, not RLIMIT_AS: it counts what a program writes to (malloc, bytearray, brk),
    not address space reserved and never touched, so Java and Node still start under 1 GiB.
    The CPU hard limit is a second later than the soft one: SIGXCPU first, then SIGKILL.
    """
    cpu = limits.cpu_seconds
    return [
        prlimit,
        f"--data={limits.memory_bytes}",
        f"--nproc={limits.max_processes}",
        f"--cpu={cpu}:{cpu + 1}",
        f"--fsize={limits.max_file_bytes}",
        "--core=0",
        "--",
    ]


def host_identity() -> tuple[int, int] | None:
    """The host (uid, gid) bwrap runs as, or None to keep the server's own.

    Inside bwrap's user namespace a command runs as the host uid that started bwrap, and the
    kernel never applies RLIMIT_NPROC to host root; so a server running as root hands its
    commands to an unprivileged uid. A server that is not root keeps its uid (it has no other).
    """
    if os.geteuid() != 0:
        return None
    uid = int(settings.SANDBOX_HOST_UID)
    return uid, uid


def workspace_hand_over(root: str, uid: int, gid: int) -> None:
    """Make the workspace the sandbox uid's: it must reach it, and own what the tools wrote.

    Raises SandboxRefused when a directory above the workspace does not let that uid pass.
    The walk opens every directory relative to its parent with O_NOFOLLOW and changes owners
    through descriptors, so a command swapping a directory for a symlink meanwhile can only
    make it skip an entry, never reach outside the workspace.
    """
    for parent in Path(root).parents:
        if not _searchable(os.stat(parent), uid, gid):
            logger.warning(
                "The shell sandbox (uid %s) cannot pass %s to reach the workspace %s",
                uid,
                parent,
                root,
            )
            raise SandboxRefused(
                f"Shell commands are unavailable: the sandbox user (uid {uid}) cannot reach "
                "this workspace. An administrator can make WORKSPACES_ROOT and every directory "
                "above it searchable by other users (chmod o+x)."
            )
    _own_tree(root, uid, gid)


def _searchable(st: os.stat_result, uid: int, gid: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _own(fd: int, uid: int, gid: int) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)


def _own_files(dir_fd: int, uid: int, gid: int) -> list[str]:
    """Give the regular files of one directory to uid; return its subdirectories' names."""
    subdirs: list[str] = []
    with os.scandir(dir_fd) as entries:
        listed = list(entries)
    for entry in listed:
        with contextlib.suppress(OSError):  # gone or replaced meanwhile: nothing to hand over
            if entry.is_symlink():
                continue
            if entry.is_dir(follow_symlinks=False):
                subdirs.append(entry.name)
                continue
            st = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or (st.st_uid, st.st_gid) == (uid, gid):
                continue
            fd = os.open(entry.name, _FILE_FLAGS, dir_fd=dir_fd)
            try:
                opened = os.fstat(fd)
                # A second name for the file may live outside the workspace: leave it alone.
                if stat.S_ISREG(opened.st_mode) and opened.st_nlink == 1:
                    _own(fd, uid, gid)
            finally:
                os.close(fd)
    return subdirs


def _own_tree(root: str, uid: int, gid: int) -> None:
    top = os.open(root, _DIRECTORY_FLAGS)
    try:
        _own(top, uid, gid)
        stack = [(top, _own_files(top, uid, gid))]
    except BaseException:
        os.close(top)
        raise
    try:
        while stack:
            fd, pending = stack[-1]
            if not pending:
                stack.pop()
                os.close(fd)
                continue
            name = pending.pop()
            if len(stack) >= HAND_OVER_MAX_DEPTH:
                continue
            try:
                child = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError:  # gone, or no longer a directory
                continue
            try:
                _own(child, uid, gid)
                subdirs = _own_files(child, uid, gid)
            except OSError:
                os.close(child)
                continue
            stack.append((child, subdirs))
    finally:
        for fd, _ in stack:
            os.close(fd)

"""Linux isolation primitives for the sandbox: namespaces, capabilities, Landlock, cgroups.

Thin ctypes wrappers over syscalls the standard library lacks on Python 3.10/3.11 (unshare,
capset, the three Landlock calls). Each returns whether it worked instead of raising, because
the sandbox runs with whatever subset the kernel (or container) allows and reports it
(`SandboxPool.features`). Used by sandbox_worker.py; see code_execution.py for the design.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24


# ---------------------------------------------------------------- processes and namespaces
def prctl(option: int, arg: int) -> int:
    return _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0)


def die_with_parent() -> None:
    """SIGKILL us when our parent dies (then check it did not die already)."""
    ppid = os.getppid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != ppid:
        os._exit(1)


def unshare_session_namespaces() -> bool:
    """New user+pid+net+ipc namespaces; uid/gid 0 inside map to our own uid/gid outside, so
    file permissions stay what the host has while capabilities only count inside."""
    uid, gid = os.geteuid(), os.getegid()
    if _libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC) != 0:
        return False
    try:  # we hold no capability in the parent namespace now: map only ourselves
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        with open("/proc/self/uid_map", "w") as f:
            f.write(f"0 {uid} 1")
        with open("/proc/self/gid_map", "w") as f:
            f.write(f"0 {gid} 1")
    except OSError as e:
        print(f"sandbox: cannot map ids in the new user namespace: {e}", file=sys.stderr)
        os._exit(1)
    return True


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets (capset v3)."""
    for cap in range(64):
        if prctl(PR_CAPBSET_DROP, cap) != 0:
            break

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    data = (ctypes.c_uint32 * 6)()
    _libc.capset(ctypes.byref(Header(0x20080522, 0)), data)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


# ---------------------------------------------------------------- Landlock
_LL_FS = [1 << i for i in range(16)]  # EXECUTE .. IOCTL_DEV
_LL_FILE_RIGHTS = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)
_LL_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir


def landlock_abi() -> int:
    r = _libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(r), 0)


def landlock_restrict(read_paths: list[str], write_paths: list[str]) -> int:
    """Allow reading only `read_paths`, writing only `write_paths`, no TCP bind/connect, no
    signals or abstract unix sockets outside the sandbox. Returns the ABI used (0 = none)."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    n_fs = {1: 13, 2: 14, 3: 15, 4: 15}.get(abi, 16)
    handled_fs = sum(_LL_FS[:n_fs])
    handled_net = 0b11 if abi >= 4 else 0
    scoped = 0b11 if abi >= 6 else 0

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    attr = RulesetAttr(handled_fs, handled_net, scoped)
    size = 24 if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = _libc.syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if ruleset < 0:
        return 0
    for paths, rights in ((read_paths, _LL_READ), (write_paths, handled_fs)):
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights & handled_fs
            if not os.path.isdir(path):
                allowed &= _LL_FILE_RIGHTS
            rule = PathBeneath(allowed, fd)
            _libc.syscall(445, ruleset, 1, ctypes.byref(rule), 0)
            os.close(fd)
    ok = _libc.syscall(446, ruleset, 0) == 0
    os.close(ruleset)
    return abi if ok else 0


def python_read_paths() -> list[str]:
    import site

    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.update(site.getsitepackages())
    paths.update(["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime",
                  "/dev/urandom", "/dev/zero", os.path.realpath("/proc/self")])
    return sorted(paths)


# ---------------------------------------------------------------- cgroups (v1)
# RLIMIT_NPROC never applies to processes of the real root user (capabilities or not) and
# RLIMIT_AS is per process, so as root each session also gets its own "pids" and "memory"
# cgroup: a fork bomb hits pids.max, and all of a session's processes together hit the
# memory limit (the kernel's OOM killer then picks inside the session only).
CGROUP_CONTROLLERS = ("pids", "memory")


def pool_cgroups() -> dict[str, str]:
    """Create this pool's cgroup under ours for each v1 controller we may write to."""
    found: dict[str, str] = {}
    try:
        with open("/proc/self/cgroup") as f:
            mine = {c: line.strip().split(":", 2)[2] for line in f
                    for c in line.split(":")[1].split(",") if c in CGROUP_CONTROLLERS}
    except (OSError, IndexError):
        return found
    for ctrl, rel in mine.items():
        path = os.path.join("/sys/fs/cgroup", ctrl, rel.lstrip("/"), f"aimo3-sandbox-{os.getpid()}")
        try:
            os.mkdir(path)
            found[ctrl] = path
        except OSError:
            pass
    return found


def enter_cgroups(pools: dict[str, str], limits: dict[str, dict[str, int]]) -> list[str]:
    """Move this process into a new child cgroup of each pool cgroup, with `limits[ctrl]`
    ({file: value}) written first. Returns the cgroups joined."""
    joined = []
    for ctrl, pool_path in pools.items():
        path = os.path.join(pool_path, f"s{os.getpid()}")
        try:
            os.mkdir(path)
            for name, value in limits.get(ctrl, {}).items():
                try:
                    with open(os.path.join(path, name), "w") as f:
                        f.write(str(value))
                except OSError:
                    if name in ("pids.max", "memory.limit_in_bytes"):
                        raise  # the limit this cgroup exists for
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            joined.append(path)
        except OSError:
            try:
                os.rmdir(path)
            except OSError:
                pass
    return joined


def oom_kills(paths: list[str]) -> int:
    """How many processes the OOM killer took in these (memory) cgroups."""
    total = 0
    for path in paths:
        try:
            with open(os.path.join(path, "memory.oom_control")) as f:
                total += sum(int(ln.split()[1]) for ln in f if ln.startswith("oom_kill "))
        except (OSError, ValueError, IndexError):
            pass
    return total


def leave_cgroups(paths: list[str]) -> None:
    """Move back to the parent of the pool cgroup and remove the session's cgroups."""
    for path in paths:
        try:
            above_pool = os.path.dirname(os.path.dirname(path))
            with open(os.path.join(above_pool, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.rmdir(path)
        except OSError:
            pass


def remove_pool_cgroups(pools: dict[str, str]) -> None:
    for pool_path in pools.values():
        for _ in range(20):  # sessions' cgroups empty out as their processes finish dying
            for name in os.listdir(pool_path) if os.path.isdir(pool_path) else []:
                if name.startswith("s"):
                    try:
                        os.rmdir(os.path.join(pool_path, name))
                    except OSError:
                        pass
            try:
                os.rmdir(pool_path)
                break
            except OSError:
                time.sleep(0.05)

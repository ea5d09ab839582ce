"""The process side of the sandbox (see code_execution.py for the design and its limits).

Run as a script by `SandboxPool`, never imported by user code. One *template* process imports
math/numpy/sympy once, then forks a fresh process tree per session on request:

    template -fork-> supervisor -unshare(user,pid,net,ipc), fork-> init (pid 1) -fork-> runner

* supervisor: outside the new namespaces; reports the init's pid and, later, how the session
  ended on a status socket the model's code never sees; kills anything left over and removes
  the session's temp dir.
* init: pid 1 of the session's pid namespace, so killing it (what the host does on a timeout)
  makes the kernel kill every process the cell started; it also makes RLIMIT_CPU's SIGXCPU
  reach the cell runner (the kernel drops default-action signals sent to a namespace's pid 1).
* cell runner: applies rlimits, Landlock and capability dropping to itself, then runs cells.

The supervisor also puts the session in its own cgroups (v1 pids and memory, where writable)
before unsharing. The isolation calls themselves live in sandbox_isolation.py.

Messages with the host are 4-byte big-endian length + JSON (never pickle: the cell runner is
untrusted and the host must not unpickle what it writes).
"""

from __future__ import annotations

import ast
import io
import json
import os
import resource
import signal
import socket
import struct
import sys
import time
import traceback

try:
    from aimo3_recipe.utils import sandbox_isolation as iso
except ImportError:  # run by path without the package installed: the sibling file
    import sandbox_isolation as iso  # type: ignore[no-redef]

CELL_PREFIX = "<cell "  # cell N of a session is compiled as "<cell N>"


# ---------------------------------------------------------------- framing
def send_msg(sock: socket.socket, obj: dict) -> None:
    data = json.dumps(obj).encode()
    sock.sendall(struct.pack(">I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_msg(sock: socket.socket) -> dict | None:
    head = _recv_exact(sock, 4)
    if head is None:
        return None
    body = _recv_exact(sock, struct.unpack(">I", head)[0])
    return None if body is None else json.loads(body)


# ---------------------------------------------------------------- cell runner
class _CappedWriter(io.TextIOBase):
    """stdout/stderr replacement that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit: int):
        self.limit, self.parts, self.size, self.dropped = limit, [], 0, 0

    encoding = "utf-8"

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:  # e.g. subprocess.run(..., stdout=sys.stdout): the captured fd 1
        return 1

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        room = self.limit - self.size
        if room > 0:
            self.parts.append(s[:room])
            self.size += min(len(s), room)
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)


def _short_traceback(exc: BaseException) -> str:
    """Only the frames of the model's own cell, then the error line."""
    if isinstance(exc, SyntaxError):
        return "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(CELL_PREFIX)]
    lines = ["Traceback (most recent call last):"] if frames else []
    lines += [ln.rstrip() for ln in traceback.format_list(frames)]
    lines.append("".join(traceback.format_exception_only(type(exc), exc)).rstrip())
    return "\n".join(lines)


def _run_cell(code: str, env: dict, index: int) -> object:
    """exec the cell; the value of a last bare expression is returned for printing. Each cell
    gets its own file name, so a traceback through a function from an earlier cell shows that
    cell's line, not the current cell's."""
    import linecache

    name = f"<cell {index}>"
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)
    tree = ast.parse(code, name)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body.pop().value)
    exec(compile(tree, name, "exec"), env)  # noqa: S102 - running it is the point
    if last is not None:
        return eval(compile(last, name, "eval"), env)
    return None


def _live_children() -> int:
    """Reap finished children; count the ones still running (threads' children included)."""
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass
    count = 0
    try:  # /proc/self, not /proc/<getpid()>: our pid inside the namespace differs
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                count += len(f.read().split())
    except OSError:
        return 0
    return count


def _cell_runner(sock: socket.socket, cfg: dict, tmp: str, env: dict, isolated: bool) -> None:
    import threading

    os.setsid()
    os.chdir(tmp)
    for k in ("HOME", "TMPDIR", "TMP", "TEMP"):
        os.environ[k] = tmp
    import tempfile

    tempfile.tempdir = tmp
    # C-level output (subprocesses, os.write(1, ...)) goes to a file we read after each cell.
    fd_out = os.open(os.path.join(tmp, ".fd_output"), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    null = os.open("/dev/null", os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(fd_out, 1)
    os.dup2(fd_out, 2)
    keep = {0, 1, 2, sock.fileno(), fd_out}
    for fd in [int(x) for x in os.listdir("/proc/self/fd")]:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass
    mb = 1024 * 1024
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # oversize writes fail with EFBIG instead
    resource.setrlimit(resource.RLIMIT_AS, (cfg["memory_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (cfg["max_file_mb"] * mb,) * 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    if isolated:  # counted per user namespace, so the limit is this session's own
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_processes"],) * 2)
    hard_cpu = int(cfg["session_cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (hard_cpu, hard_cpu))
    landlock = 0
    if cfg["landlock"]:
        landlock = iso.landlock_restrict(iso.python_read_paths(), [tmp, "/dev/null"])
    iso.drop_capabilities()
    send_msg(sock, {"type": "hello", "landlock": landlock})
    writer = _CappedWriter(cfg["max_output_chars"])
    cell_no, me = 0, os.getpid()
    while True:
        req = recv_msg(sock)
        if req is None:
            os._exit(0)
        writer.__init__(cfg["max_output_chars"])
        sys.stdout = sys.stderr = writer
        ru = resource.getrusage(resource.RUSAGE_SELF)
        soft = min(hard_cpu, int(ru.ru_utime + ru.ru_stime + cfg["cpu_s"]) + 1)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard_cpu))
        ok, error, tb = True, None, ""
        try:
            cell_no += 1
            value = _run_cell(req["code"], env, cell_no)
            if value is not None:
                print(repr(value))
        except SystemExit as e:  # sys.exit() ends the cell, not the session
            if e.code not in (None, 0):
                ok, error = False, f"SystemExit: {e.code}"
                tb = error
        except BaseException as e:  # noqa: BLE001 - the model's code may raise anything
            ok = False
            tb = _short_traceback(e)
            error = (tb.splitlines()[-1] if tb else type(e).__name__)[:500]
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
            signal.setitimer(signal.ITIMER_REAL, 0)  # an alarm the cell set must not fire later
        if os.getpid() != me:  # a child the cell forked got here: it must not answer the host
            os._exit(1 if error else 0)
        limit = cfg["max_output_chars"]
        out, dropped = writer.getvalue(), writer.dropped
        size = os.lseek(fd_out, 0, os.SEEK_END)
        if size:  # C-level output (subprocesses, os.write) after Python's own
            room = max(0, limit - len(out))
            os.lseek(fd_out, 0, os.SEEK_SET)
            text = os.read(fd_out, min(size, room * 4)).decode("utf-8", "replace")[:room]
            out += text
            dropped += max(0, size - len(text.encode()))
            os.ftruncate(fd_out, 0)
            os.lseek(fd_out, 0, os.SEEK_SET)
        if tb:  # the error last, kept even when the output filled the limit: models need it
            if len(tb) > limit:
                tb = "[...]" + tb[-limit:]
            out = (out + "\n" if out and not out.endswith("\n") else out) + tb + "\n"
        leftovers = []
        if any(t is not threading.main_thread() and t.is_alive() for t in threading.enumerate()):
            leftovers.append("a thread")
        if _live_children():
            leftovers.append("a child process")
        send_msg(sock, {"type": "result", "output": out, "dropped": dropped, "ok": ok,
                        "error": error, "leftover": " and ".join(leftovers) or None})
        if leftovers:
            os._exit(0)  # the namespace dies with us: the session restarts clean


# ---------------------------------------------------------------- session process tree
def _kill_orphans() -> None:
    """We are a subreaper: kill whatever got reparented to us, until nothing is left."""
    me = os.getpid()
    for _ in range(100):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == me:
                found = True
                try:
                    os.kill(int(name), signal.SIGKILL)
                except OSError:
                    pass
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            if not found:
                return
        if not found:
            return
        time.sleep(0.01)


def _supervisor(data: socket.socket, status: socket.socket, cfg: dict, tmp: str,
                env: dict) -> None:
    import shutil

    iso.die_with_parent()
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    iso.prctl(iso.PR_SET_CHILD_SUBREAPER, 1)
    os.makedirs(tmp, mode=0o700)
    mem = cfg["memory_mb"] * 1024 * 1024
    cgroups = iso.enter_cgroups(cfg.get("cgroups") or {}, {
        "pids": {"pids.max": cfg["max_processes"] + 2},  # + this supervisor and the init
        "memory": {"memory.limit_in_bytes": mem, "memory.memsw.limit_in_bytes": mem}})
    isolated = cfg["namespaces"] and iso.unshare_session_namespaces()
    init_pid = os.fork()
    if init_pid == 0:
        status.close()
        iso.die_with_parent()
        runner = os.fork()
        if runner == 0:
            iso.die_with_parent()
            try:
                _cell_runner(data, cfg, tmp, env, isolated)
            finally:
                os._exit(1)
        data.close()
        while True:  # pid 1: reap everything, mirror the runner's fate
            try:
                pid, st = os.waitpid(-1, 0)
            except ChildProcessError:
                os._exit(1)
            if pid == runner:
                os._exit(os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st))
    data.close()
    try:
        send_msg(status, {"pid": init_pid, "namespaces": isolated})
    except OSError:
        pass
    _, st = os.waitpid(init_pid, 0)
    if not isolated:  # with a pid namespace the kernel already killed everything
        _kill_orphans()
    shutil.rmtree(tmp, ignore_errors=True)
    oom = iso.oom_kills(cgroups)
    iso.leave_cgroups(cgroups)
    code = os.WEXITSTATUS(st) if os.WIFEXITED(st) else 128 + os.WTERMSIG(st)
    try:
        send_msg(status, {"exit": code, "oom_kills": oom})
    except OSError:
        pass
    os._exit(0)


def _template(ctl: socket.socket, cfg: dict) -> None:
    """Import once, then fork a session per `spawn` request until the host hangs up."""
    env: dict = {"__name__": "__main__", "__builtins__": __builtins__}
    exec(compile(cfg["prelude"], "<prelude>", "exec"), env)  # noqa: S102
    for mod in cfg["warm_modules"]:
        try:
            __import__(mod)
        except ImportError:
            pass
    import sympy

    sympy.simplify(sympy.Symbol("x") ** 2 - 1)  # fault in sympy's lazily built caches
    cfg = dict(cfg, cgroups=iso.pool_cgroups() if cfg["namespaces"] else {})
    send_msg(ctl, {"type": "hello", "landlock_abi": iso.landlock_abi(), "uid": os.geteuid(),
                   "cgroups": sorted(cfg["cgroups"])})
    supervisors: set[int] = set()  # reaped only by us, so a pid here is never someone else's
    signal.signal(signal.SIGCHLD, lambda *_: _reap(supervisors))  # no zombies lingering
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(ctl, 65536, 2)
        except OSError:
            break
        _reap(supervisors)
        if not msg:
            break
        req = json.loads(msg)
        data = socket.socket(fileno=fds[0])
        status = socket.socket(fileno=fds[1])
        pid = os.fork()
        if pid == 0:
            ctl.close()
            try:
                _supervisor(data, status, cfg, req["tmp"], env)
            finally:
                os._exit(1)
        supervisors.add(pid)
        data.close()
        status.close()
    # the host closed the pool or died: kill every session (their trees follow through
    # parent-death signals and pid namespaces) and remove the pool's directory
    import shutil

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(supervisors):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.1)
    shutil.rmtree(os.getcwd(), ignore_errors=True)
    iso.remove_pool_cgroups(cfg["cgroups"])
    os._exit(0)


def _reap(pids: set[int]) -> None:
    try:
        while True:
            pid, _ = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            pids.discard(pid)
    except ChildProcessError:
        return


def main() -> None:
    ctl = socket.socket(fileno=int(sys.argv[1]))
    cfg = json.loads(sys.argv[2])
    sys.path = [p for p in sys.path if p and os.path.abspath(p) != os.path.dirname(__file__)]
    _template(ctl, cfg)


if __name__ == "__main__":
    main()

"""Sandboxed, stateful Python execution for model-written code (TIR, rewards, evaluation).

Model code runs thousands of times per RL step, so a fresh interpreter per cell (~50-100 ms
with sympy) is too slow, and a shared interpreter is unsafe. Design: a *fork server*. One
template process imports math/numpy/sympy once; each session is a fresh fork of it (a few
ms), so every session starts clean and warm; cells in a session share state like notebook
cells. `SandboxPool(size)` caps how many cells run at once (default: the CPU count).

    with SandboxPool() as pool, pool.session() as s:
        s.run("x = 6 * 7")
        s.run("x")            # ExecResult(output="42\\n", ok=True, ...)

Each cell: stdout+stderr captured (Python and C level) and cut to `max_output_chars`; the
value of a last bare expression is printed (as Numina's TIR executor did); tracebacks keep only
the cell's own frames. A cell past its wall clock is killed with everything it started, and
the session restarts empty with an explicit "timed out" output.

What is covered (checked by tests/test_sandbox_security.py, on Linux):
* Processes: each session is its own process tree in new user, pid, network and IPC
  namespaces. Killing the session's pid-1 makes the kernel kill every process it started, so
  nothing outlives a timeout or `Session.close()`; the host's processes are invisible to it,
  and it dies with the pool (parent-death signals) if the host dies.
* Limits per cell: wall clock (`timeout_s`, enforced from the host with SIGKILL, so signal
  handlers cannot dodge it), CPU (`cpu_s`, RLIMIT_CPU; `session_cpu_s` in total), address
  space (`memory_mb`, RLIMIT_AS: allocations fail with MemoryError), processes+threads
  (`max_processes`: a cgroup-v1 "pids" limit per session when the host runs as root, since
  RLIMIT_NPROC never applies to uid 0; RLIMIT_NPROC per user namespace otherwise), file size
  (`max_file_mb`), open files (256), output (`max_output_chars`). As root with cgroup v1, a
  "memory" cgroup also caps all of a session's processes together at `memory_mb`. Threads
  or child processes still running when a cell ends restart the session; a child forked by
  a cell exits at the end of the cell instead of answering for it.
* Files: Landlock (kernel >= 5.13) allows reading only the Python installation and system
  libraries (/usr, /lib, ...) and writing only the session's own temp dir (removed at the end).
  The repo, /work, /root, /home, /tmp and /proc of other processes are unreadable.
* Network: an empty network namespace (no interfaces up) and Landlock's TCP rules (ABI >= 4).
* Environment: the worker starts from a scrubbed environment (PATH, LANG, thread counts);
  nothing of the host's (TINKER_API_KEY, WANDB_API_KEY, HF_TOKEN, ...) is passed on.
* Signals: other processes cannot be signalled (pid namespace + Landlock signal scoping,
  ABI >= 6), capabilities are dropped and no_new_privs is set.

What is NOT covered:
* Kernel exploits, CPU side channels, and syscalls in general (no seccomp filter).
* Where user namespaces are disabled (some containers) the namespaces are skipped: processes
  are then killed through a subreaper instead, there is no network isolation beyond
  Landlock's TCP rules, and no process limit (RLIMIT_NPROC would count all the host user's
  processes). As root without writable cgroup-v1 controllers (e.g. pure cgroup v2) there is
  no process or per-session memory limit: a fork bomb then runs until the wall clock kills
  its pid namespace. Where Landlock is missing, files and TCP are not restricted.
  `SandboxPool.features` says what is active; `SandboxConfig(strict=True)` refuses to start
  without namespaces and Landlock. Only tested as root (Linux 6.18, Landlock ABI 7).
* Not a defence against denial of service of the machine's disk bandwidth or page cache.
* A pool belongs to the process that made it: create one per process after a fork.
* Linux only.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from aimo3_recipe.exceptions import ConfigError

_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_worker.py")
_START_TIMEOUT_S = 120.0  # importing numpy+sympy on a loaded 2-core machine can be slow


@dataclass
class SandboxConfig:
    timeout_s: float = 10.0  # wall-clock limit per cell; the session is killed and restarted
    cpu_s: float = 10.0  # CPU seconds per cell (RLIMIT_CPU), threads and all
    session_cpu_s: float = 600.0  # CPU seconds for a whole session
    memory_mb: int = 4096  # address space per process (RLIMIT_AS); as root also RAM per session
    max_output_chars: int = 4000  # output kept per cell; the rest is replaced by a note
    max_processes: int = 16  # processes+threads per session (cgroup as root, else RLIMIT_NPROC)
    max_file_mb: int = 64  # largest file a cell may write in its temp dir
    prelude: str = "import math\nimport numpy as np\nimport sympy as sp\n"  # run in the template
    warm_modules: tuple[str, ...] = (  # imported in the template so cells import them instantly
        "itertools", "functools", "fractions", "decimal", "collections", "random", "re",
        "statistics", "heapq", "bisect", "cmath", "numbers", "string", "operator", "copy",
        "json", "datetime", "threading", "subprocess", "typing",
    )
    namespaces: bool = True  # user/pid/net/ipc namespaces per session where the kernel allows
    landlock: bool = True  # Landlock file/TCP/signal rules where the kernel has them
    strict: bool = False  # raise instead of running with a protection layer missing

    def __post_init__(self) -> None:
        for name in ("timeout_s", "cpu_s", "session_cpu_s", "memory_mb", "max_output_chars",
                     "max_processes", "max_file_mb"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"SandboxConfig.{name} must be > 0; got {getattr(self, name)}")


@dataclass
class ExecResult:
    output: str  # stdout+stderr of the cell (truncated), traceback included on error
    ok: bool  # finished without an exception and without being killed
    timed_out: bool = False  # killed at the wall-clock limit
    error: str | None = None  # last line of the error ("ZeroDivisionError: ..."), or why it died
    duration_s: float = 0.0  # wall clock on the host, including the round trip
    restarted: bool = False  # the session's state was lost (timeout, crash, leftovers)


def _scrubbed_env(tmp: str) -> dict[str, str]:
    """Only what Python needs; nothing of the host (API keys, tokens, proxies)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": tmp,
           "TMPDIR": tmp, "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg"}
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS"):
        env[var] = "1"  # one BLAS thread: parallelism comes from the pool, not from inside a cell
    return env


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(code - 128).name
    except ValueError:
        return f"signal {code - 128}"


def _death_message(code: int, cfg: SandboxConfig) -> str:
    if code == 128 + signal.SIGXCPU:
        return f"CPU time limit exceeded ({cfg.cpu_s:g} s per cell)"
    if code == 128 + signal.SIGKILL:
        return "the Python process was killed (SIGKILL: it killed itself, or hit a hard limit)"
    if code == 128 + signal.SIGSEGV:
        return "the Python process crashed (segmentation fault)"
    if code > 128:
        return f"the Python process was killed by {_signal_name(code)}"
    return f"the Python process exited with status {code}"


class Session:
    """One notebook-like Python session. Use from one thread (or one asyncio task) at a time."""

    def __init__(self, pool: SandboxPool):
        self.pool = pool
        self.cfg = pool.config
        self._data: socket.socket | None = None
        self._status: socket.socket | None = None
        self._pid: int | None = None
        self._pidfd: int | None = None
        self._status_buf = b""
        self._data_buf = b""
        self._status_eof = False
        self._ready = False  # the cell runner said hello (its set-up is done)
        self._oom = False  # the kernel's OOM killer struck in the session's memory cgroup
        self._exit_code: int | None = None
        self.namespaces: bool | None = None
        self.landlock: int | None = None
        self.closed = False
        self._interrupted = False  # interrupt() was called: cells end at once
        self._spawn()

    # -- process management
    def _spawn(self) -> None:
        self._data, theirs_data = socket.socketpair()
        self._status, theirs_status = socket.socketpair()
        self._pid = self._pidfd = self._exit_code = None
        self._status_eof = self._ready = self._oom = False
        self._status_buf = self._data_buf = b""
        self.pool._spawn_session(theirs_data, theirs_status)
        theirs_data.close()
        theirs_status.close()

    def _pump_status(self, timeout: float) -> None:
        """Read the supervisor's {"pid"} / {"exit"} messages (the trusted side: the model's
        code never holds this socket, so it cannot make us kill a pid of its choosing)."""
        if self._status is None or self._status_eof:
            return
        r, _, _ = select.select([self._status], [], [], max(timeout, 0.0))
        if not r:
            return
        chunk = self._status.recv(4096)
        if not chunk:
            self._status_eof = True
            if self._exit_code is None:
                self._exit_code = -1
            return
        self._status_buf += chunk
        while len(self._status_buf) >= 4:
            n = struct.unpack(">I", self._status_buf[:4])[0]
            if len(self._status_buf) < 4 + n:
                break
            msg = json.loads(self._status_buf[4:4 + n])
            self._status_buf = self._status_buf[4 + n:]
            if "pid" in msg:
                self._pid = int(msg["pid"])
                self.namespaces = bool(msg.get("namespaces"))
                try:
                    self._pidfd = os.pidfd_open(self._pid)
                except OSError:
                    self._pidfd = None
            if "exit" in msg:
                self._exit_code = int(msg["exit"])
                self._oom = int(msg.get("oom_kills") or 0) > 0

    def _await_pid(self, deadline: float) -> None:
        while self._pid is None and not self._status_eof and time.monotonic() < deadline:
            self._pump_status(deadline - time.monotonic())

    def _kill(self, wait: bool = False) -> None:
        """SIGKILL the session's pid 1: the kernel then kills everything in its namespace.
        With `wait`, return only once the supervisor reports it all gone and cleaned up."""
        if self._status is None:  # already torn down
            self._teardown()
            return
        deadline = time.monotonic() + 10.0
        self._await_pid(deadline)
        if self._pidfd is not None:
            try:
                signal.pidfd_send_signal(self._pidfd, signal.SIGKILL)
            except (OSError, AttributeError):
                pass
        if wait and self._status is not None:
            if self._data is not None:
                self._data.close()
                self._data = None
            while not self._status_eof and time.monotonic() < deadline:
                self._pump_status(deadline - time.monotonic())
        self._teardown()

    def _teardown(self) -> None:
        for s in (self._data, self._status):
            if s is not None:
                s.close()
        if self._pidfd is not None:
            os.close(self._pidfd)
        self._data = self._status = None
        self._pidfd = self._pid = None

    def interrupt(self) -> None:
        """Cancel from any thread: a cell running in this session is killed within ~0.1 s
        (its thread sees the flag while it waits) and every later cell returns an error at
        once. For work nobody waits for any more; `close` is still owed by the user."""
        self._interrupted = True

    def restart(self) -> None:
        """Drop all state: kill this session's processes and start a fresh one."""
        self._kill()
        self._spawn()

    def close(self, wait: bool = True) -> None:
        """Kill the session's processes and remove its temp dir; with `wait` (the default)
        both are done when this returns, else they finish in the background."""
        if self.closed:
            return
        self.closed = True
        self._kill(wait=wait)
        with self.pool._ctl_lock:
            self.pool._sessions.discard(self)

    def __enter__(self) -> Session:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- running cells
    def _recv_result(self, deadline: float) -> dict | str:
        """The next message from the cell runner, or "timeout" / "dead" / "protocol"."""
        assert self._data is not None and self._status is not None
        # output + traceback, each up to max_output_chars, JSON-escaped (<= 12 bytes a char)
        limit = self.cfg.max_output_chars * 32 + 65536
        while True:
            if len(self._data_buf) >= 4:
                n = struct.unpack(">I", self._data_buf[:4])[0]
                if n > limit:
                    return "protocol"
                if len(self._data_buf) >= 4 + n:
                    body, self._data_buf = self._data_buf[4:4 + n], self._data_buf[4 + n:]
                    try:
                        msg = json.loads(body)
                    except ValueError:
                        return "protocol"
                    return msg if isinstance(msg, dict) else "protocol"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            if self._interrupted:
                return "interrupted"
            watch = [self._data] if self._status_eof else [self._data, self._status]
            r, _, _ = select.select(watch, [], [], min(remaining, 0.1))
            if self._data in r:  # data first: a result written just before dying still counts
                chunk = self._data.recv(1 << 20)
                if not chunk:
                    end = time.monotonic() + 2.0
                    while self._exit_code is None and time.monotonic() < end:
                        self._pump_status(end - time.monotonic())
                    return "dead"
                self._data_buf += chunk
                continue
            if self._status in r:
                self._pump_status(0)
                if self._exit_code is not None:
                    return "dead"

    def run(self, code: str) -> ExecResult:
        """Run one cell in this session; never raises for anything the cell does."""
        if self.closed:
            raise RuntimeError("Session.run() on a closed session; open a new pool.session()")
        if self._interrupted:
            return ExecResult("Interrupted: the caller cancelled this session.", ok=False,
                              error="interrupted")
        if self._data is None:
            self._spawn()
        failed = self._wait_ready()
        if failed is not None:
            return failed
        with self.pool._slots:  # the cell's clock starts once it has a slot
            t0 = time.monotonic()
            return self._run_locked(code, t0)

    def _wait_ready(self) -> ExecResult | None:
        """Wait for a new process's hello, outside the cell's clock: on a loaded machine a
        fork can take longer than a cell is allowed to."""
        if self._ready:
            return None
        t0 = time.monotonic()
        msg = self._recv_result(t0 + _START_TIMEOUT_S)
        if isinstance(msg, dict) and msg.get("type") == "hello":
            self.landlock = int(msg.get("landlock") or 0)
            self._ready = True
            return None
        why = (_death_message(self._exit_code if self._exit_code is not None else -1, self.cfg)
               if msg == "dead" else f"no start-up message: {msg}")
        self.restart()
        text = f"Error: the sandbox session did not start ({why}); it was restarted."
        return ExecResult(text, ok=False, error=why, duration_s=time.monotonic() - t0,
                          restarted=True)

    def _run_locked(self, code: str, t0: float) -> ExecResult:
        cfg = self.cfg
        payload = json.dumps({"code": code}).encode()
        assert self._data is not None
        self._data_buf = b""  # anything the previous cell wrote after its result is not ours
        self._data.setblocking(False)
        try:
            while self._data.recv(1 << 20):
                pass
        except (BlockingIOError, OSError):
            pass
        self._data.settimeout(cfg.timeout_s)
        try:
            self._data.sendall(struct.pack(">I", len(payload)) + payload)
        except OSError:
            pass  # the runner died (or stopped reading) between cells; _recv_result reports it
        deadline = t0 + cfg.timeout_s
        msg = self._recv_result(deadline)
        dt = time.monotonic() - t0
        if msg == "timeout":
            self.restart()
            text = (f"Timed out after {cfg.timeout_s:g} s: the cell was killed and the "
                    "session restarted (variables from earlier cells are gone).")
            return ExecResult(text, ok=False, timed_out=True, error="TimeoutError: " + text,
                              duration_s=dt, restarted=True)
        if msg == "interrupted":
            self._kill()
            return ExecResult("Interrupted: the caller cancelled this session.", ok=False,
                              error="interrupted", duration_s=dt, restarted=True)
        if msg in ("dead", "protocol"):
            code_ = self._exit_code if self._exit_code is not None else -1
            why = (_death_message(code_, cfg) if msg == "dead"
                   else "the cell corrupted the sandbox's channel")
            if msg == "dead" and self._oom:
                why = f"out of memory (the session's processes together passed {cfg.memory_mb} MB)"
            self.restart()
            text = f"Error: {why}; the session was restarted (variables are gone)."
            return ExecResult(text, ok=False, error=why, duration_s=dt, restarted=True)
        assert isinstance(msg, dict)
        # lone surrogates (print("\ud800")) would break tokenizers downstream: make it UTF-8
        output = str(msg.get("output", "")).encode("utf-8", "replace").decode("utf-8")
        dropped = int(msg.get("dropped") or 0)
        if dropped:
            output += f"\n[... {dropped} more characters of output were cut ...]"
        restarted = False
        if msg.get("leftover"):
            output += (f"\n[{msg['leftover']} started by this cell was still running, so the "
                       "session was restarted (variables are gone)]")
            self.restart()
            restarted = True
        error = msg.get("error")
        return ExecResult(output, ok=bool(msg.get("ok")), error=str(error) if error else None,
                          duration_s=dt, restarted=restarted)

    async def arun(self, code: str) -> ExecResult:
        """asyncio version of run(); runs on the pool's thread executor."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool._executor, self.run, code)


class SandboxPool:
    """A fork server plus a cap on concurrently running cells (`size`, default CPU count).
    `spares` sessions (default `size`) are kept forked ahead, so `session()` rarely waits."""

    def __init__(self, size: int | None = None, config: SandboxConfig | None = None,
                 spares: int | None = None):
        if sys.platform != "linux":
            raise RuntimeError("the sandbox needs Linux (namespaces, rlimits, Landlock)")
        self.config = config or SandboxConfig()
        self.size = size or os.cpu_count() or 1
        if self.size < 1:
            raise ConfigError(f"SandboxPool(size=...) must be >= 1; got {size}")
        self._owner_pid = os.getpid()  # sockets shared with a forked copy of us would mix up
        self._slots = threading.BoundedSemaphore(self.size)
        self._executor = ThreadPoolExecutor(max_workers=max(32, self.size),
                                            thread_name_prefix="sandbox")
        self._ctl_lock = threading.Lock()
        self._sessions: set[Session] = set()
        self._spares: collections.deque[Session] = collections.deque()
        self._n_spares = self.size if spares is None else spares
        self._counter = 0
        self._dir = tempfile.mkdtemp(prefix="aimo3-sandbox-")
        os.chmod(self._dir, 0o711)
        cfg = asdict(self.config)
        cfg["warm_modules"] = list(cfg["warm_modules"])
        host, theirs = socket.socketpair()
        self._ctl = host
        self._proc = subprocess.Popen(
            [sys.executable, "-s", "-B", _WORKER, str(theirs.fileno()), json.dumps(cfg)],
            pass_fds=[theirs.fileno()], env=_scrubbed_env(self._dir), cwd=self._dir,
            stdin=subprocess.DEVNULL, start_new_session=True)
        theirs.close()
        host.settimeout(_START_TIMEOUT_S)
        from aimo3_recipe.utils.sandbox_worker import recv_msg

        try:
            hello = recv_msg(host)
        except OSError:
            hello = None
        host.settimeout(None)
        if not hello:
            self.close()
            raise RuntimeError(f"the sandbox template process did not start ({_WORKER}); run it "
                               "by hand to see its error")
        self.features = {"landlock_abi": int(hello["landlock_abi"]) if self.config.landlock else 0,
                         "cgroups": list(hello.get("cgroups") or [])}
        with self.session() as s:  # probe what the kernel lets a session have
            r = s.run("1")
            s._await_pid(time.monotonic() + _START_TIMEOUT_S)  # its message says what it got
            self.features["namespaces"] = bool(s.namespaces)
            self.features["landlock"] = s.landlock or 0
        if not r.ok:
            self.close()
            raise RuntimeError(f"the sandbox cannot run a trivial cell: {r.output}")
        if self.config.strict and not (self.features["namespaces"] and self.features["landlock"]):
            self.close()
            raise RuntimeError(f"SandboxConfig(strict=True) but this kernel only allows "
                               f"{self.features}; run as root or enable user namespaces and "
                               "Landlock (lsm=landlock)")
        _LIVE_POOLS.add(self)

    def _spawn_session(self, data: socket.socket, status: socket.socket) -> None:
        with self._ctl_lock:
            if self._proc.poll() is not None:
                raise RuntimeError("the sandbox pool is closed; create a new SandboxPool")
            self._counter += 1
            tmp = os.path.join(self._dir, f"s{self._counter}")
            socket.send_fds(self._ctl, [json.dumps({"tmp": tmp}).encode()],
                            [data.fileno(), status.fileno()])

    def session(self) -> Session:
        """A fresh session (its process is forked ahead of time when a spare is ready)."""
        if os.getpid() != self._owner_pid:
            raise RuntimeError("this SandboxPool was created in another process (before a fork); "
                               "create a new SandboxPool in each process that runs code")
        try:
            s = self._spares.popleft()
        except IndexError:
            s = self._new_session()
        while len(self._spares) < self._n_spares:
            self._spares.append(self._new_session())
        return s

    @property
    def open_sessions(self) -> int:
        """Sessions handed out by session() and not closed yet (spares not counted)."""
        return len(self._sessions) - len(self._spares)

    def _new_session(self) -> Session:
        s = Session(self)
        with self._ctl_lock:
            self._sessions.add(s)
        return s

    def run(self, code: str) -> ExecResult:
        """One cell in a fresh session."""
        with self.session() as s:
            return s.run(code)

    def close(self) -> None:
        self._n_spares = 0
        for s in list(self._sessions):
            s.close()
        try:
            self._ctl.close()
        except OSError:
            pass
        if self._proc.poll() is None:
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._executor.shutdown(wait=False)
        shutil.rmtree(self._dir, ignore_errors=True)
        _LIVE_POOLS.discard(self)

    def __enter__(self) -> SandboxPool:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_LIVE_POOLS: set[SandboxPool] = set()
_DEFAULT_POOLS: dict[str, SandboxPool] = {}
_DEFAULT_LOCK = threading.Lock()


def default_pool(config: SandboxConfig | None = None) -> SandboxPool:
    """A process-wide pool per config, started on first use and closed at exit."""
    config = config or SandboxConfig()
    key = json.dumps(asdict(config), sort_keys=True)
    with _DEFAULT_LOCK:
        pool = _DEFAULT_POOLS.get(key)
        if pool is None or pool._proc.poll() is not None:
            pool = _DEFAULT_POOLS[key] = SandboxPool(config=config)
        return pool


def run_code(code: str, config: SandboxConfig | None = None) -> ExecResult:
    """Run one cell in a fresh session of the shared default pool."""
    return default_pool(config).run(code)


@atexit.register
def _close_all() -> None:
    for pool in list(_LIVE_POOLS):
        pool.close()

"""A hard time limit for sympy: persistent worker subprocesses, killed when a deadline passes.

Why not `signal.alarm` (math-verify's timeout): it only works in the main thread, so RL reward
functions running in threads or asyncio executors either crash or run with no limit. Why not a
thread with a join timeout: a thread stuck in sympy cannot be stopped and keeps a core busy.
A subprocess can be killed from any thread, asyncio task or worker process.

Protocol: one JSON request per line on the worker's stdin, one JSON reply per line on stdout
(`symbolic.handle`). Workers are started lazily (sympy import ~1 s, not charged to a
comparison's time limit), reused, and replaced after a kill. Each OS process has its own pool
(a forked child never touches its parent's workers). Limits: POSIX only (uses `select`).
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

STARTUP_TIMEOUT_S = 60.0  # importing sympy + the LaTeX parser on a loaded machine


class WorkerTimeout(Exception):
    """The worker did not answer before the deadline (it has been killed)."""


class _Worker:
    def __init__(self) -> None:
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
        env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "aimo3_recipe.grader.worker_pool"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        self._buf = b""
        reply = self._read(time.monotonic() + STARTUP_TIMEOUT_S)
        if reply.get("ready") is not True:
            self.kill()
            raise RuntimeError("sympy worker failed to start")

    def _read(self, deadline: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerTimeout()
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise WorkerTimeout()
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError("sympy worker exited")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, req: dict[str, Any], deadline: float) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read(deadline)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:
            pass


class WorkerPool:
    """Idle workers of this OS process; a call borrows one, or starts one if none is idle."""

    def __init__(self, max_idle: int = 4) -> None:
        self.pid = os.getpid()
        self.max_idle = max_idle
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self.restarts = 0
        self._failures = 0  # consecutive start-up failures
        self._retry_at = 0.0

    def _borrow(self) -> _Worker:
        with self._lock:
            while self._idle:
                w = self._idle.pop()
                if w.alive():
                    return w
            if self._failures >= 3 and time.monotonic() < self._retry_at:
                raise RuntimeError("sympy workers keep failing to start; retrying in a minute")
        try:
            w = _Worker()
        except Exception:
            with self._lock:  # circuit breaker: do not pay a failing start-up on every call
                self._failures += 1
                self._retry_at = time.monotonic() + 60.0
            raise
        with self._lock:
            self._failures = 0
            self._all.append(w)
        return w

    def _give_back(self, w: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle and w.alive():
                self._idle.append(w)
                return
            if w in self._all:
                self._all.remove(w)
        w.kill()

    def _discard(self, w: _Worker) -> None:
        with self._lock:
            if w in self._all:
                self._all.remove(w)
            self.restarts += 1
        w.kill()
        # start the replacement now, in the background, so the next call does not wait for it
        threading.Thread(target=self._spare, daemon=True).start()

    def _spare(self) -> None:
        try:
            w = _Worker()
        except Exception:
            return
        with self._lock:
            if os.getpid() == self.pid and len(self._idle) < self.max_idle:
                self._all.append(w)
                self._idle.append(w)
                return
        w.kill()

    def call(self, req: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send a request; raise WorkerTimeout (worker killed) when no reply within `timeout` s."""
        w = self._borrow()
        try:
            reply = w.call(req, time.monotonic() + timeout)
        except BaseException:
            self._discard(w)
            raise
        self._give_back(w)
        return reply

    def warm(self, n: int = 1) -> None:
        """Start `n` idle workers now, so the first comparisons do not wait for sympy imports."""
        ws = [self._borrow() for _ in range(n)]
        for w in ws:
            self._give_back(w)

    def close(self) -> None:
        if os.getpid() != self.pid:
            return  # a forked child must not kill its parent's workers
        with self._lock:
            ws, self._all, self._idle = self._all, [], []
        for w in ws:
            w.kill()


_POOL: WorkerPool | None = None
_POOL_LOCK = threading.Lock()


def get_pool() -> WorkerPool:
    """This OS process's pool (a new one after a fork)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL.pid != os.getpid():
            _POOL = WorkerPool()
        return _POOL


@atexit.register
def _shutdown() -> None:
    if _POOL is not None:
        _POOL.close()


def _serve() -> None:
    """Worker main loop: answer requests until stdin closes (the parent exited)."""
    from aimo3_recipe.grader import symbolic

    symbolic.parse_latex("1+x")  # load the parser before saying ready
    out = sys.stdout
    out.write(json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            reply = symbolic.handle(json.loads(line))
        except Exception as e:
            reply = {"error": f"{type(e).__name__}: {e}"[:300]}
        out.write(json.dumps(reply) + "\n")
        out.flush()


if __name__ == "__main__":
    _serve()

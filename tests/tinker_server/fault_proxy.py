"""A fault-injecting HTTP/1.1 proxy for the Tinker tests: 127.0.0.1 only, bounded, stops itself.

Sits between the SDK and the SkyRL server and, on a seeded schedule, breaks requests in the
ways networks and load balancers do:

- `reset`: the connection is closed before the request is forwarded (never reached the server);
- `500` / `503` / `429`: an error answer instead of forwarding (never reached the server);
- `delay`: the request is forwarded after a pause (the answer arrives late, but arrives);
- `drop`: the request IS forwarded and the server acts on it, then the connection is closed
  before the answer is sent (the client cannot tell whether it was applied: the case that
  duplicates a step when a client simply resends).

Faults hit POST requests to the endpoints named in `paths` (default: training, sampling and
checkpoint calls), at most `max_faults` of them. `persistent_after=N` answers 503 to every
request after the N-th (a fault that does not go away). `counts` says what was injected.
The proxy listens on 127.0.0.1, forwards only to the 127.0.0.1 upstream it was given, and
stops after `max_seconds`.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

DEFAULT_PATHS = ("/api/v1/forward_backward", "/api/v1/optim_step", "/api/v1/forward",
                 "/api/v1/asample", "/api/v1/sample", "/api/v1/save_weights",
                 "/api/v1/save_weights_for_sampler", "/api/v1/load_weights",
                 "/api/v1/retrieve_future")


@dataclass
class FaultPlan:
    rate: float = 0.0  # probability that an eligible request gets a fault
    kinds: tuple[str, ...] = ("reset", "500", "503", "429", "delay", "drop")
    paths: tuple[str, ...] = DEFAULT_PATHS
    max_faults: int = 40  # bound on injected faults
    delay_s: float = 1.5  # the pause of a `delay` fault
    persistent_after: int | None = None  # 503 to every request after this many
    # paths whose n-th POST (n = drop_at) is dropped after the server acted, whatever the dice
    # say: the ambiguous fault, made certain to happen
    drops_on: tuple[str, ...] = ()
    drop_at: int = 3
    seed: int = 0


@dataclass
class FaultProxy:
    upstream_port: int
    plan: FaultPlan = field(default_factory=FaultPlan)
    max_seconds: float = 1800.0
    port: int = 0
    counts: Counter = field(default_factory=Counter)

    def start(self) -> FaultProxy:
        self._rng = random.Random(self.plan.seed)
        self._requests = 0
        self._per_path: dict[str, int] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("fault proxy did not start")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_plan(self, plan: FaultPlan) -> None:
        self._rng = random.Random(plan.seed)
        self._requests = 0
        self._per_path = {}
        self.plan = plan

    def stop(self) -> None:
        if getattr(self, "_loop", None) is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    # -- the server ------------------------------------------------------------------------
    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await asyncio.wait_for(self._stop.wait(), self.max_seconds)
        except asyncio.TimeoutError:
            pass
        server.close()
        await server.wait_closed()

    def _fault_for(self, method: str, path: str) -> str | None:
        self._requests += 1
        plan = self.plan
        if plan.persistent_after is not None and self._requests > plan.persistent_after:
            return "503"
        if method != "POST" or not path.startswith(plan.paths):
            return None
        for target in plan.drops_on:
            if path == target:
                self._per_path[target] = self._per_path.get(target, 0) + 1
                if self._per_path[target] == plan.drop_at:
                    return "drop"
        if sum(self.counts.values()) >= plan.max_faults or self._rng.random() >= plan.rate:
            return None
        kinds = plan.kinds
        if path.startswith("/api/v1/retrieve_future"):  # polling: resending is always safe
            kinds = tuple(k for k in kinds if k != "drop") or kinds
        return self._rng.choice(kinds)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader = up_writer = None
        try:
            while True:
                head, body = await _read_message(reader, request=True)
                if head is None:
                    return
                method, path = head.split(b" ", 2)[:2]
                fault = self._fault_for(method.decode(), path.decode())
                if fault is not None:
                    self.counts[fault] += 1
                    self.counts[f"{fault} {path.decode().split('?')[0]}"] += 1
                if fault == "reset":
                    return
                if fault in ("500", "503", "429"):
                    payload = b'{"detail": "injected fault"}'
                    writer.write(b"HTTP/1.1 " + fault.encode() + b" Injected\r\n"
                                 b"content-type: application/json\r\ncontent-length: "
                                 + str(len(payload)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + payload)
                    await writer.drain()
                    return
                if fault == "delay":
                    await asyncio.sleep(self.plan.delay_s)
                if up_writer is None:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1",
                                                                         self.upstream_port)
                up_writer.write(head + body)
                await up_writer.drain()
                rhead, rbody = await _read_message(up_reader, request=False)
                if rhead is None:
                    return
                if fault == "drop":  # the server acted on it; the answer is lost
                    return
                writer.write(rhead + rbody)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    w.close()


async def _read_message(reader: asyncio.StreamReader, *, request: bool
                        ) -> tuple[bytes | None, bytes]:
    """One HTTP/1.1 message: (start line + headers, body) with Content-Length or chunked."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None, b""
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        if b":" in line:
            k, v = line.split(b":", 1)
            headers[k.strip().lower()] = v.strip()
    if b"content-length" in headers:
        return head, await reader.readexactly(int(headers[b"content-length"]))
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        body = b""
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            body += size_line + chunk
            if size == 0:
                return head, body
    if request:
        return head, b""
    status = int(head.split(b" ", 2)[1])
    if status in (204, 304) or 100 <= status < 200:
        return head, b""
    return head, await reader.read()  # until close


def wait_port(port: int, timeout: float) -> bool:
    """Whether 127.0.0.1:port accepts connections within `timeout` seconds."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.25)
    return False

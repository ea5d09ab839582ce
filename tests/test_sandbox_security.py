"""Hostile cells, one property per test. After each: the host (this pytest process) and the
pool's template survive, no process is left behind, and a fresh session works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool

SECRETS = {"TINKER_API_KEY": "tk-" + uuid.uuid4().hex, "WANDB_API_KEY": "wb-" + uuid.uuid4().hex,
           "HF_TOKEN": "hf_" + uuid.uuid4().hex}


@pytest.fixture(scope="module")
def pool():
    saved = {k: os.environ.get(k) for k in SECRETS}
    os.environ.update(SECRETS)  # the host has secrets; the sandbox must not see them
    cfg = SandboxConfig(timeout_s=2.0, cpu_s=5.0, memory_mb=1024, max_output_chars=1000)
    try:
        with SandboxPool(size=2, config=cfg, spares=0) as p:  # spares would be descendants
            yield p
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _descendants(root: int) -> list[int]:
    parent = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    parent[int(name)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    found, frontier = [], [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read()[:120]
    except OSError:
        return "?"


def _assert_survived(pool) -> None:
    assert pool._proc.poll() is None, "the template process died"
    deadline = time.monotonic() + 10  # generous: CI machines are loaded
    while _descendants(pool._proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = {p: _cmdline(p) for p in _descendants(pool._proc.pid)}
    assert not left, f"processes were left behind: {left}"
    with pool.session() as s:
        assert s.run("1 + 1").output == "2\n"


def _needs(pool, layer: str) -> None:
    if not pool.features[layer]:
        pytest.skip(f"this kernel/container does not allow {layer} (pool.features={pool.features})")


def _attack(pool, code: str):
    with pool.session() as s:
        r = s.run(code)
    _assert_survived(pool)
    return r


def test_write_outside_temp_dir(pool, tmp_path):
    _needs(pool, "landlock")
    os.chmod(tmp_path, 0o777)
    targets = [tmp_path / "owned.txt", "/tmp/aimo3-attack-" + uuid.uuid4().hex,
               os.path.join(os.path.dirname(__file__), "owned.py")]
    code = "\n".join(f"try:\n    open({str(t)!r}, 'w').write('x')\n    print('WROTE')\n"
                     f"except OSError as e:\n    print(type(e).__name__)" for t in targets)
    r = _attack(pool, code)
    assert "WROTE" not in r.output and r.output.count("PermissionError") == 3
    assert not any(os.path.exists(t) for t in targets)


def test_read_files_outside(pool, tmp_path):
    _needs(pool, "landlock")
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    os.chmod(tmp_path, 0o755)
    os.chmod(secret, 0o644)
    code = "\n".join(f"try:\n    print(open({p!r}).read()[:50])\nexcept OSError as e:\n"
                     f"    print(type(e).__name__)"
                     for p in (str(secret), os.path.abspath(__file__), "/etc/hostname"))
    r = _attack(pool, code)
    assert "s3cret" not in r.output and r.output.count("PermissionError") == 3


def test_secrets_in_environment_are_invisible(pool):
    host = os.getpid()
    code = ("import os\nprint(sorted(os.environ))\n"
            f"try:\n    print(open('/proc/{host}/environ').read())\n"
            "except OSError as e:\n    print(type(e).__name__)")
    r = _attack(pool, code)
    assert not any(v in r.output for v in SECRETS.values())
    assert not any(k in r.output for k in SECRETS)
    assert "PermissionError" in r.output


def test_no_network(pool):
    _needs(pool, "namespaces")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    code = (f"import socket\nfor addr in [('127.0.0.1', {port}), ('1.1.1.1', 80)]:\n"
            "    try:\n        socket.create_connection(addr, timeout=1)\n"
            "        print('CONNECTED')\n"
            "    except OSError as e:\n        print(type(e).__name__)\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "try:\n    s.sendto(b'x', ('8.8.8.8', 53))\n    print('SENT')\n"
            "except OSError as e:\n    print(type(e).__name__)")
    r = _attack(pool, code)
    assert "CONNECTED" not in r.output and "SENT" not in r.output
    with pytest.raises(socket.timeout):
        server.accept()
    server.close()


def test_fork_bomb(pool):
    _needs(pool, "namespaces")
    r = _attack(pool, "import os\nwhile True:\n    os.fork()")
    # stopped by the process limit (fork fails) or, failing that, by the wall clock
    assert not r.ok and (r.timed_out or "BlockingIOError" in r.error)


def test_memory_bomb(pool):
    with pool.session() as s:
        r = s.run("blocks = []\nwhile True:\n    blocks.append(np.empty(2**24))")  # 128 MB each
        assert not r.ok and "MemoryError" in r.error and not r.timed_out
        assert s.run("del blocks\nx = 5\nx").output == "5\n"  # the session itself survives
    _assert_survived(pool)


def test_memory_bomb_spread_over_processes():
    cfg = SandboxConfig(timeout_s=30, memory_mb=512)
    with SandboxPool(size=1, config=cfg, spares=0) as pool:
        if "memory" not in pool.features["cgroups"]:
            pytest.skip(f"no memory cgroup here (pool.features={pool.features})")
        # 6 x 128 MB, each process under its own 512 MB address-space limit, 768 MB together
        code = ("import os, time\nkids = []\nfor _ in range(6):\n    pid = os.fork()\n"
                "    if pid == 0:\n        a = np.ones(2**24)\n        time.sleep(0.5)\n"
                "        os._exit(0)\n    kids.append(pid)\n"
                "print(sorted(os.waitpid(k, 0)[1] for k in kids))")
        r = _attack(pool, code)
    assert r.ok and "9" in r.output  # the kernel's OOM killer took some of them (SIGKILL)


def test_infinite_loop(pool):
    r = _attack(pool, "while True:\n    pass")
    assert r.timed_out and r.restarted and 1.9 < r.duration_s < 6


def test_busy_loop_in_a_background_thread(pool):
    with pool.session() as s:
        s.run("state = 1")
        r = s.run("import threading\nthreading.Thread(target=lambda: [0 for _ in iter(int, 1)],"
                  " daemon=True).start()\nprint('started')")
        assert r.output.startswith("started") and r.restarted and "thread" in r.output
        assert s.run("'state' in globals()").output == "False\n"  # it restarted clean
    _assert_survived(pool)


def test_kill_the_parent(pool):
    _needs(pool, "namespaces")  # else os.kill(-1) would reach all of the host user's processes
    template = pool._proc.pid
    code = ("import os, signal\n"
            f"for pid in (os.getppid(), {os.getpid()}, {template}):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n"
            "    except OSError as e:\n        print(type(e).__name__)\n"
            "if os.getpid() < 100:  # only inside our own pid namespace\n"
            "    os.kill(-1, signal.SIGKILL)\n")
    _attack(pool, code)  # we are still here to run this line


def test_signal_handlers_cannot_dodge_the_timeout(pool):
    code = ("import signal\nfor sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM,"
            " signal.SIGXCPU, signal.SIGHUP):\n    signal.signal(sig, signal.SIG_IGN)\n"
            "while True:\n    pass")
    r = _attack(pool, code)
    assert r.timed_out and r.duration_s < 6


def test_sys_exit_ends_only_the_cell(pool):
    with pool.session() as s:
        s.run("kept = 7")
        r = s.run("import sys\nsys.exit(3)")
        assert not r.ok and r.error == "SystemExit: 3" and not r.restarted
        assert s.run("kept").output == "7\n"
    _assert_survived(pool)


def test_os_exit_restarts_the_session(pool):
    r = _attack(pool, "import os\nos._exit(0)")
    assert not r.ok and r.restarted and "exited" in r.error


def test_huge_output(pool):
    r = _attack(pool, "print('x' * 10**8)")
    assert len(r.output) < 2000 and "more characters" in r.output
    r = _attack(pool, "import os\nfor _ in range(100):\n    os.write(1, b'y' * 10**6)")
    assert len(r.output) < 2000 and r.output.startswith("y" * 100)  # then "File too large"


def test_segfault_via_ctypes(pool):
    r = _attack(pool, "import ctypes\nctypes.string_at(0)")
    assert not r.ok and r.restarted and "segmentation fault" in r.error


def test_leftover_child_processes(pool):
    tag = str(1000 + uuid.uuid4().int % 1000) + ".5"
    code = (f"import os, subprocess, time\nsubprocess.Popen(['sleep', '{tag}'])\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        os.execvp('sleep', ['sleep', '{tag}'])\n    os._exit(0)\n"
            "time.sleep(0.2)")
    with pool.session() as s:
        r = s.run(code)
        assert r.restarted and "child process" in r.output
    _assert_survived(pool)
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    assert tag.encode() not in f.read(), "a sleep escaped the sandbox"
            except OSError:
                pass


def test_host_death_leaves_nothing_behind(tmp_path):
    script = tmp_path / "host.py"
    script.write_text(
        "from aimo3_recipe.utils.code_execution import SandboxPool\n"
        "pool = SandboxPool(size=1, spares=2)\n"
        "s = pool.session()\n"
        "print(pool._proc.pid, pool._dir, flush=True)\n"
        "s.run('while True: pass')\n")
    host = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    template, base = host.stdout.readline().split()
    time.sleep(1.0)  # the cell is spinning now
    before = _descendants(int(template)) + [int(template)]
    assert len(before) >= 7  # template + 3 sessions x (supervisor, init, runner)
    host.kill()
    host.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        alive = [p for p in before if os.path.exists(f"/proc/{p}")]
        if not alive and not os.path.exists(base):
            break
        time.sleep(0.1)
    assert not alive, f"left running after the host died: {alive}"
    assert not os.path.exists(base)


def test_every_layer_the_kernel_offers_is_used(pool):
    """Guards the skips above: a layer is only missing when the kernel really refuses it."""
    import ctypes

    from aimo3_recipe.utils.sandbox_isolation import landlock_abi

    pid = os.fork()
    if pid == 0:  # can this process get the namespaces a session asks for?
        libc = ctypes.CDLL(None, use_errno=True)
        os._exit(0 if libc.unshare(0x10000000 | 0x20000000 | 0x40000000 | 0x08000000) == 0 else 1)
    kernel_allows_namespaces = os.waitpid(pid, 0)[1] == 0
    assert pool.features["namespaces"] == kernel_allows_namespaces
    assert bool(pool.features["landlock"]) == (landlock_abi() > 0)

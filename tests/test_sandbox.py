"""Sandbox behaviour a notebook user expects: state, printing, errors, limits, concurrency.
(Attacks live in test_sandbox_security.py.)"""

from __future__ import annotations

import asyncio
import threading

import pytest

from aimo3_recipe.utils.code_execution import SandboxConfig, SandboxPool, run_code


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(size=2, config=SandboxConfig(timeout_s=3.0, max_output_chars=200)) as p:
        yield p


def test_state_persists_across_cells(pool):
    with pool.session() as s:
        assert s.run("x = 6 * 7").ok
        r = s.run("print(x)")
    assert r.output == "42\n" and r.ok and r.error is None and not r.timed_out


def test_last_expression_is_printed_but_not_none_or_assignments(pool):
    with pool.session() as s:
        assert s.run("1 + 1").output == "2\n"
        assert s.run("'a' * 2").output == "'aa'\n"  # repr, as a notebook shows it
        assert s.run("None").output == ""
        assert s.run("y = 3").output == ""
        assert s.run("if True:\n    z = 4\nz * 2").output == "8\n"


def test_preloaded_modules(pool):
    r = pool.run("print(sp.factorint(360), np.arange(3).sum(), math.comb(5, 2))")
    assert r.output == "{2: 3, 3: 2, 5: 1} 3 10\n"


def test_short_traceback_keeps_only_the_cell(pool):
    with pool.session() as s:
        s.run("def f(a):\n    return 1 / a")
        r = s.run("x = 1\nf(0)")
    assert not r.ok and r.error == "ZeroDivisionError: division by zero"
    # the frame from cell 1 shows cell 1's line, not the current cell's
    assert 'File "<cell 2>", line 2' in r.output and "    f(0)" in r.output
    assert 'File "<cell 1>", line 2, in f\n    return 1 / a' in r.output
    assert "sandbox_worker" not in r.output and "code_execution" not in r.output


def test_syntax_error(pool):
    r = pool.run("def (:")
    assert not r.ok and r.error.startswith("SyntaxError") and "Traceback" not in r.output


def test_output_before_an_error_is_kept(pool):
    r = pool.run("print('before')\nraise ValueError('bad')")
    assert r.output.startswith("before\n") and r.error == "ValueError: bad"


def test_stderr_and_c_level_output_are_captured(pool):
    r = pool.run("import sys, os\nprint('err', file=sys.stderr)\nos.write(1, b'raw\\n')")
    assert "err\n" in r.output and "raw\n" in r.output


def test_output_truncated_to_config(pool):
    r = pool.run("print('x' * 1000)")
    assert r.output.startswith("x" * 200) and "801 more characters" in r.output
    assert r.ok


def test_timeout_restarts_the_session(pool):
    with pool.session() as s:
        s.run("keep = 1")
        r = s.run("import time\ntime.sleep(60)")
        assert r.timed_out and not r.ok and r.restarted and "Timed out after 3 s" in r.output
        assert 2.9 < r.duration_s < 10
        r2 = s.run("print('keep' in globals())")
    assert r2.output == "False\n" and r2.ok


def test_cpu_limit_kills_before_the_wall_clock():
    with SandboxPool(size=1, config=SandboxConfig(timeout_s=30, cpu_s=1), spares=0) as p:
        r = p.run("while True:\n    pass")
    assert not r.ok and not r.timed_out and r.restarted and "CPU time limit" in r.error
    assert r.duration_s < 20


def test_sessions_do_not_share_state(pool):
    with pool.session() as a, pool.session() as b:
        a.run("secret = 1")
        r = b.run("secret")
    assert r.error == "NameError: name 'secret' is not defined"


def test_files_in_own_temp_dir_work_and_vanish(pool):
    with pool.session() as s:
        assert s.run("open('f.txt', 'w').write('hi')").ok
        r = s.run("import os\nprint(open('f.txt').read(), os.getcwd())")
        text, cwd = r.output.split()
    assert text == "hi"
    import os

    assert not os.path.exists(cwd)  # removed with the session


def test_threads_from_many_host_threads(pool):
    results = {}

    def worker(i):
        with pool.session() as s:
            s.run(f"v = {i}")
            results[i] = s.run("v * 10").output

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert results == {i: f"{i * 10}\n" for i in range(6)}


def test_asyncio_api(pool):
    async def main():
        sessions = [pool.session() for _ in range(4)]
        try:
            rs = await asyncio.gather(*(s.arun(f"{i} ** 2") for i, s in enumerate(sessions)))
        finally:
            for s in sessions:
                s.close()
        return [r.output for r in rs]

    assert asyncio.run(main()) == ["0\n", "1\n", "4\n", "9\n"]


def test_run_code_one_off():
    r = run_code("sum(range(10))")
    assert r.output == "45\n" and r.ok


def test_config_validation():
    with pytest.raises(ValueError, match="timeout_s"):
        SandboxConfig(timeout_s=0)


def test_closed_session_raises_with_advice(pool):
    s = pool.session()
    s.close()
    with pytest.raises(RuntimeError, match="new pool.session"):
        s.run("1")


def test_without_namespaces_leftovers_are_still_killed():
    """The fallback where the kernel refuses user namespaces: a subreaper kills what is left."""
    import os
    import time

    tag = f"{os.getpid() % 1000 + 3000}.25"
    cfg = SandboxConfig(timeout_s=3, namespaces=False)
    with SandboxPool(size=1, config=cfg, spares=0) as p:
        assert p.features["namespaces"] is False
        with p.session() as s:
            r = s.run(f"import os\nif os.fork() == 0:\n    os.setsid()\n"
                      f"    os.execvp('sleep', ['sleep', '{tag}'])\nimport time\ntime.sleep(0.2)")
            assert r.restarted
    time.sleep(0.2)
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                assert tag.encode() not in f.read()
        except OSError:
            pass


def test_strict_refuses_missing_layers():
    with pytest.raises(RuntimeError, match="strict=True"):
        SandboxPool(size=1, config=SandboxConfig(landlock=False, strict=True), spares=0)


def test_process_limit():
    import os

    cfg = SandboxConfig(timeout_s=30, max_processes=6)
    with SandboxPool(size=1, config=cfg, spares=0) as pool:
        limited = "pids" in pool.features["cgroups"] or (os.geteuid() and pool.features["namespaces"])
        if not limited:
            pytest.skip(f"no process-count limit available here: {pool.features}")
        code = ("import os, time\nn = 0\nfor _ in range(40):\n    try:\n        pid = os.fork()\n"
                "    except BlockingIOError:\n        break\n    if pid == 0:\n        time.sleep(30)\n"
                "        os._exit(0)\n    n += 1\nprint(n)")
        with pool.session() as s:
            r = s.run(code)
    assert r.output.startswith("5\n") and r.restarted  # the runner itself is one of the 6


def test_forked_child_does_not_answer_for_the_cell(pool):
    with pool.session() as s:
        s.run("state = 'kept'")
        r = s.run("import os\nif os.fork() == 0:\n    print('child')\nelse:\n"
                  "    os.wait()\n    print('parent')")
        assert r.output == "parent\n" and not r.restarted
        assert s.run("state").output == "'kept'\n"


def test_pool_refuses_use_from_a_forked_process(pool):
    import os

    pid = os.fork()
    if pid == 0:
        try:
            pool.session()
            os._exit(1)
        except RuntimeError:
            os._exit(0)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0


def test_output_is_valid_utf8(pool):
    r = pool.run("print('a\\ud800b', 'é')")
    assert r.output == "a?b é\n"
    r.output.encode("utf-8")


def test_alarm_set_by_a_cell_does_not_fire_later(pool):
    import time

    with pool.session() as s:
        assert s.run("import signal\nsignal.alarm(1)\nv = 1").ok
        time.sleep(1.5)
        r = s.run("v")
    assert r.output == "1\n" and not r.restarted

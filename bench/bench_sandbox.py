"""Sandbox throughput and latency against the two designs it replaces, measured in one run.

    python bench/bench_sandbox.py [--seconds 6] [--workers N]

For a trivial cell and a sympy cell, cells/s and p50/p99 latency of:
  pool/session   our SandboxPool, one persistent session per worker thread (TIR's case)
  pool/fresh     our SandboxPool, a new session per cell (spawn + run + close)
  python -c      a fresh `python -c` subprocess per cell (Numina's AIMO1 executor); the sympy
                 cell has to import sympy every time, the trivial one imports nothing
  jupyter        one persistent ipykernel per worker via jupyter_client (NeMo-Skills' design)
Workers = the CPU count by default; every design gets the same number of parallel workers.
Goals (issue 5): pool/session >= 20x python -c on trivial cells, faster than jupyter, and
>= 100 cells/s on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

CELLS = {
    "trivial": ("", "x = 1 + 1\nx"),
    "sympy": ("import sympy as sp\n",
              "t = sp.Symbol('t')\nsp.solve(t**2 - 5*t + 6, t), sp.factorint(2**32 + 1)"),
}


def measure(make_worker, n_workers: int, seconds: float) -> dict:
    """Run `n_workers` threads, each calling its own `run()` in a loop for `seconds`. Worker
    set-up (starting a kernel, opening a session) happens before the clock starts."""
    latencies: list[float] = []
    lock = threading.Lock()
    errors: queue.Queue = queue.Queue()
    ready = threading.Barrier(n_workers + 1)
    window: dict[str, float] = {}

    def loop():
        run = close = None
        try:
            run, close = make_worker()
        except Exception as e:  # noqa: BLE001 - report, do not hang the bench
            errors.put(e)
        ready.wait()
        if run is None:
            return
        try:
            while time.monotonic() < window["stop"]:
                t0 = time.perf_counter()
                run()
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
        except Exception as e:  # noqa: BLE001
            errors.put(e)
        finally:
            close()

    threads = [threading.Thread(target=loop) for _ in range(n_workers)]
    for t in threads:
        t.start()
    window["stop"] = float("inf")
    ready.wait()
    t0 = time.monotonic()
    window["stop"] = t0 + seconds
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    if not errors.empty():
        raise errors.get()
    lat = sorted(latencies)
    return {"cells_per_s": len(lat) / wall, "n": len(lat),
            "p50_ms": 1e3 * statistics.median(lat) if lat else float("nan"),
            "p99_ms": 1e3 * lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan")}


def pool_session(pool, code):
    def make():
        s = pool.session()
        def run():
            r = s.run(code)
            assert r.ok, r.output
        return run, s.close
    return make


def pool_fresh(pool, code):
    def make():
        def run():
            with pool.session() as s:
                r = s.run(code)
            assert r.ok, r.output
        return run, lambda: None
    return make


def python_c(imports, code):
    # a bare expression prints nothing in `python -c`, so print it, as Numina's wrapper did
    lines = code.split("\n")
    script = imports + "\n".join(lines[:-1] + [f"print({lines[-1]})"])

    def make():
        def run():
            subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                           env={"PATH": os.environ.get("PATH", "")})
        return run, lambda: None
    return make


def jupyter(imports, code):
    from jupyter_client.manager import start_new_kernel

    def make():
        km, kc = start_new_kernel(kernel_name="python3", stderr=subprocess.DEVNULL)
        if imports:
            kc.execute_interactive(imports, timeout=60, output_hook=lambda m: None)

        def run():
            out = []
            reply = kc.execute_interactive(code, timeout=60, output_hook=out.append)
            assert reply["content"]["status"] == "ok", reply

        def close():
            kc.stop_channels()
            km.shutdown_kernel(now=True)
        return run, close
    return make


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="measuring time per row")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="parallel workers for every design")
    ap.add_argument("--skip-jupyter", action="store_true")
    args = ap.parse_args()

    from aimo3_recipe.utils.code_execution import SandboxPool

    print(f"# bench_sandbox: {args.workers} workers, {os.cpu_count()} CPUs, "
          f"{args.seconds:g} s per row, load avg {os.getloadavg()[0]:.1f}")
    results: dict[tuple[str, str], dict] = {}
    with SandboxPool(size=args.workers) as pool:
        print(f"# pool features: {pool.features}")
        for cell, (imports, code) in CELLS.items():
            designs = {
                "pool/session": pool_session(pool, code),
                "pool/fresh": pool_fresh(pool, code),
                "python -c": python_c(imports, code),
            }
            if not args.skip_jupyter:
                designs["jupyter"] = jupyter(imports, code)
            for name, make in designs.items():
                results[(cell, name)] = r = measure(make, args.workers, args.seconds)
                print(f"{cell:8s} {name:13s} {r['cells_per_s']:9.1f} cells/s   "
                      f"p50 {r['p50_ms']:8.2f} ms   p99 {r['p99_ms']:8.2f} ms   (n={r['n']})",
                      flush=True)

    print("\n# ratios (pool/session cells/s over the baseline, same run)")
    for cell in CELLS:
        ours = results[(cell, "pool/session")]["cells_per_s"]
        for base in ("python -c", "jupyter", "pool/fresh"):
            if (cell, base) in results:
                ratio = ours / results[(cell, base)]["cells_per_s"]
                print(f"{cell:8s} vs {base:11s}: {ratio:7.1f}x")
    trivial = results[("trivial", "pool/session")]["cells_per_s"]
    vs_c = trivial / results[("trivial", "python -c")]["cells_per_s"]
    print(f"\n# goals: >=20x python -c on trivial: {vs_c:.0f}x {'OK' if vs_c >= 20 else 'MISSED'}; "
          f">=100 cells/s: {trivial:.0f} {'OK' if trivial >= 100 else 'MISSED'}", end="")
    if ("trivial", "jupyter") in results:
        vs_j = trivial / results[("trivial", "jupyter")]["cells_per_s"]
        print(f"; faster than jupyter: {vs_j:.1f}x {'OK' if vs_j > 1 else 'MISSED'}")
    else:
        print()


if __name__ == "__main__":
    main()

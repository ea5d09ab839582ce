"""`make test` (and so CI): the whole suite in tiers, each its own pytest session, with the
time each took, then one closing line for all of them.

    fast    unit tests and tiny-model smoke tests through the real CLIs (minutes)
    slow    the real 135M embedded model
    vllm    the vLLM engine (one engine per session: start-up ~60-90 s on CPU)
    tinker  a local Tinker-API server (SkyRL, its own virtualenv)

Extra arguments go to every pytest call (e.g. `-x`). A tier that selects no test (pytest's
exit 5) is reported and is not a failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

TIERS = [
    ("fast", "not slow and not vllm and not tinker"),
    ("slow", "slow and not vllm and not tinker"),
    ("vllm", "vllm and not tinker"),
    ("tinker", "tinker"),
]
COUNTS = ("passed", "failed", "skipped", "error", "errors", "deselected")


def main(extra: list[str]) -> int:
    totals = dict.fromkeys(COUNTS, 0)
    failed_tiers, times = [], []
    for name, marker in TIERS:
        print(f"\n===== tier {name}: pytest -m '{marker}'", flush=True)
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", marker, *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        sys.stdout.write(proc.stdout)
        minutes = (time.time() - t0) / 60
        # pytest's closing line (asyncio noise may follow it)
        last = next((line for line in reversed(proc.stdout.splitlines())
                     if re.search(r"\d+ (passed|failed|errors?|deselected)\b", line)), "")
        for count, word in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", last):
            totals[word] += int(count)
        if proc.returncode not in (0, 5):
            failed_tiers.append(name)
        times.append(f"{name} {minutes:.1f} min" + (" (no tests)" if proc.returncode == 5 else ""))
        print(f"===== tier {name}: {minutes:.1f} min, exit {proc.returncode}", flush=True)
    print("\ntier times: " + ", ".join(times))
    if failed_tiers:
        print("failed tiers: " + ", ".join(failed_tiers))
    errors = totals["error"] + totals["errors"]
    print(f"{totals['passed']} passed, {totals['failed'] + errors} failed, "
          f"{totals['skipped']} skipped")
    return 1 if failed_tiers else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

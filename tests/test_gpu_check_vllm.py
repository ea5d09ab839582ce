"""bench/gpu_check_vllm.py, the prepared GPU check, runs end to end here on CPU (tiny model):
the GPU session that runs it for real has no time to debug it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check_vllm.py"


def test_gpu_check_runs_on_cpu_and_reports_each_check(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check_vllm", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "check.json"
    report = mod.main(["--tiny", "--problems", "1", "--out", str(out)])
    assert json.loads(out.read_text())["model"] == "tiny"
    for name in ("weight_sync", "solver", "version"):
        assert report[name]["ok"], (name, report[name])
    assert report["weight_sync"]["max_abs_diff_vs_peft_merge"] <= 1e-6
    assert report["colocate"]["llm_kwargs_on_cuda"]["gpu_memory_utilization"] == 0.3
    assert report["solver"]["summary"]["attempt_errors"] == 1  # the injected grader failure

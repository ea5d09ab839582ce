"""bench/gpu_check_training.py, the GPU check prepared for a machine with torch, transformers,
peft and accelerate only, runs on CPU with a tiny model while vLLM, TRL and datasets cannot be
imported, and its checks come out as the GPU run should show them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what the GPU machine lacks: importing any of them fails as it would there
BLOCK = """
import sys, runpy
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('vllm', 'trl', 'datasets'):
            raise ImportError(f'{name} is not installed on the GPU check machine')
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def test_gpu_check_runs_on_cpu_without_vllm_trl_datasets(tmp_path):
    out = tmp_path / "check.json"
    cmd = [sys.executable, "-c", BLOCK, str(ROOT / "bench" / "gpu_check_training.py"),
           "--tiny", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    names = [u["setting"] for u in result["updates"]]
    assert names == ["one_chunk", "chunked", "chunked_ckpt", "budget"]
    assert all(u["status"] == "ok" and u["tokens_per_s"] > 0 for u in result["updates"])
    losses = [u["loss"] for u in result["updates"]]  # every setting computes the same update
    assert max(losses) - min(losses) < 1e-3, losses
    assert result["precision"]["ok"], result["precision"]
    assert result["devices"]["ok"] and result["devices"]["world_size"] == 1

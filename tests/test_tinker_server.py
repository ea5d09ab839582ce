"""Tinker SFT and RL against a real Tinker-API server: SkyRL 0.3.0 (JAX, CPU) on 127.0.0.1,
serving a tiny Llama (tests/tinker_server/tiny_model.py), through the tinker SDK installed
in .venv (0.24.x: the server rejects newer SDKs' protobuf bodies).

The server lives in its own venv (tests/tinker_server/setup.sh, run by .ci/run); without it
these tests skip and say how to get it. One server for the session; each test prints its
seconds. What is checked: SFT loss falls on a repeated batch and the exported adapter/merged
model scores tokens as the service does; RL runs through the CLI, writes metrics, samples
(reward, advantage, extracted answer, ground truth) and checkpoints, and a sampling client
from the saved weights answers; no file the run wrote holds the API key; a run killed midway
resumes to the same losses as an uninterrupted one; a fault-injecting proxy (resets, 5xx,
429, delays, answers dropped after the server acted) costs no step and duplicates none; a
fault that persists stops the run with a message, and the rerun resumes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVER_PY = REPO / ".venv-skyrl" / "bin" / "python"
LAUNCH = REPO / "tests" / "tinker_server" / "launch.py"
MARKER_KEY = "tml-marker-key-7f3a9c21e5d84b60"  # a fake key whose every appearance is a leak
pytestmark = pytest.mark.tinker

sys.path.insert(0, str(REPO / "tests"))
from tinker_server.fault_proxy import FaultPlan, FaultProxy, wait_port
from tinker_server.tiny_model import save_server_model, write_short_answers


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tinker_server(tmp_path_factory):
    """(base url, model folder, port) of a SkyRL Tinker server on 127.0.0.1."""
    if not SERVER_PY.is_file():
        pytest.skip("the Tinker test server's venv .venv-skyrl is missing: run "
                    "tests/tinker_server/setup.sh (installs skyrl[tinker,jax]==0.3.0, ~2.5 min)")
    tinker = pytest.importorskip("tinker", reason="the tinker SDK is not installed in this "
                                 "venv: AIMO3_EXTRAS=dev,tinker ./setup_env.sh")
    from importlib.metadata import version

    sdk = version("tinker")
    if tuple(int(x) for x in sdk.split(".")[:2]) > (0, 24):
        pytest.skip(f"tinker SDK {sdk} here; the SkyRL test server speaks <= 0.24.1 "
                    "(pip install 'tinker==0.24.1')")
    del tinker
    root = tmp_path_factory.mktemp("tinker-server")
    model = save_server_model(root / "model")
    port = _free_port()
    log = (root / "server.log").open("w")
    env = {**os.environ, "TINKER_TELEMETRY": "0", "JAX_PLATFORMS": "cpu"}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(SERVER_PY), str(LAUNCH), "--base-model", str(model), "--backend", "jax",
         "--host", "127.0.0.1", "--port", str(port), "--checkpoints-base", str(root / "ckpt"),
         "--database-url", f"sqlite:///{root / 'db.sqlite'}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        if not wait_port(port, 180) or proc.poll() is not None:
            pytest.fail(f"SkyRL server did not start; log:\n{(root / 'server.log').read_text()[-3000:]}")
        print(f"\n[tinker] SkyRL server up in {time.monotonic() - t0:.1f} s (tinker SDK {sdk})")
        yield f"http://127.0.0.1:{port}", model, port
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(autouse=True)
def _timed(request):
    t0 = time.monotonic()
    yield
    print(f"\n[tinker] {request.node.name}: {time.monotonic() - t0:.1f} s")


@pytest.fixture
def marker_key(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", MARKER_KEY)
    monkeypatch.setenv("TINKER_TELEMETRY", "0")
    return MARKER_KEY


@pytest.fixture(scope="session")
def short_data(tmp_path_factory) -> Path:
    return write_short_answers(tmp_path_factory.mktemp("data") / "short.jsonl")


def _cfg(url, model, log_dir, **kw):
    """The config as the command line builds it: paths (`sft.dataset`) and aliases."""
    from aimo3_recipe.config import from_dict
    from aimo3_recipe.training.tinker_config import TinkerTrainConfig

    base = dict(model_name=str(model), base_url=url, log_dir=str(log_dir), lora_rank=8,  # noqa: C408 - key=value, as on the command line
                retry_attempts=6, request_timeout=60.0, retry_seconds=120.0, export=False)
    return from_dict(TinkerTrainConfig, {**base, **kw})


def _metrics(log_dir) -> list[dict]:
    return [json.loads(line) for line in (Path(log_dir) / "metrics.jsonl").read_text().splitlines()]


def _cli(kind: str, args: dict, env_key: str, timeout: float = 420):
    script = REPO / "aimo3_recipe" / "training" / f"tinker_{kind}_math.py"
    argv = [sys.executable, str(script), *[f"{k}={v}" for k, v in args.items()]]
    env = {**os.environ, "TINKER_API_KEY": env_key, "TINKER_TELEMETRY": "0"}
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(Path(args["log_dir"]).parent), check=False)


SFT8 = {"batch_size": 8, "sft.num_epochs": 2, "sft.learning_rate": 1e-2, "sft.save_steps": 2}  # 40 examples: 10 steps


@pytest.fixture(scope="session")
def clean_sft(tinker_server, short_data, tmp_path_factory):
    """An uninterrupted 10-step SFT run: the reference for resume and fault runs."""
    from aimo3_recipe.training.tinker_sft_math import main

    url, model, _ = tinker_server
    os.environ.setdefault("TINKER_API_KEY", MARKER_KEY)
    log_dir = tmp_path_factory.mktemp("sft-clean")
    main(_cfg(url, model, log_dir, **{"sft.dataset": str(short_data)}, **SFT8))
    return log_dir, _metrics(log_dir)


def _losses(rows):
    return [(r["step"], round(r["train/loss"], 4)) for r in rows]


def test_sft_loss_falls_on_a_repeated_batch_and_export_matches_the_service(
        tinker_server, short_data, tmp_path, marker_key):
    from aimo3_recipe.training.tinker_sft_math import main

    url, model, _ = tinker_server
    cfg = _cfg(url, model, tmp_path / "sft", max_samples=4, batch_size=4, export=True,
               **{"sft.dataset": str(short_data), "sft.num_epochs": 6,
                  "sft.learning_rate": 1e-2, "sft.save_steps": 3})
    out = main(cfg)
    losses = [r["train/loss"] for r in _metrics(cfg.log_dir)]
    print(f"[tinker] SFT losses on one repeated batch: {[round(x, 3) for x in losses]}")
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < 0.5 * losses[0]
    assert (Path(cfg.log_dir) / "checkpoints" / "step-6" / "tinker.json").is_file()
    # the exported PEFT adapter + merged model score tokens as the service's sampler does
    import torch
    from tinker import types
    from transformers import AutoModelForCausalLM

    from aimo3_recipe.utils.tinker_sdk import connect, resolve

    assert out == Path(cfg.log_dir) / "model"
    assert (Path(cfg.log_dir) / "adapter" / "adapter_config.json").is_file()
    sampler_path = json.loads((Path(cfg.log_dir) / "sampler.json").read_text())["sampler_path"]
    client = resolve(connect(url, marker_key).create_sampling_client(model_path=sampler_path))
    ids = list(range(20, 60))
    remote = [x for x in client.compute_logprobs(types.ModelInput.from_ints(ids)).result()
              if x is not None][-(len(ids) - 1):]
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        logits = merged(torch.tensor([ids])).logits[0, :-1].float()
    local = torch.log_softmax(logits, -1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    gap = (torch.tensor(remote) - local).abs().max().item()
    print(f"[tinker] exported model vs service log-probs: max gap {gap:.2e}")
    assert gap < 1e-3


def test_rl_cli_writes_metrics_samples_checkpoints_and_no_secret(
        tinker_server, short_data, clean_sft, tmp_path):
    from aimo3_recipe.rl.tinker_backend import read_state

    url, model, _ = tinker_server
    sft_dir, _ = clean_sft
    init = read_state(sft_dir / "checkpoints" / "step-10")
    log_dir = tmp_path / "rl"
    args = {"model_name": model, "base_url": url, "log_dir": log_dir, "rl.dataset": short_data,
            "init_state": init, "lora_rank": 8, "batch_size": 2, "group_size": 8,
            "rl.temperature": 1.5, "rl.num_steps": 3, "rl.mode": "cot", "rl.max_new_tokens": 12,
            "rl.eval_samples": 2, "rl.learning_rate": 1e-2, "rl.ppo_epochs": 2,
            "rl.save_steps": 2, "save_samples": True, "rl.sample_save_rate": 1.0,
            "verbose": True, "export": True}
    out = _cli("rl", args, MARKER_KEY)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _metrics(log_dir)
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    for key in ("reward/mean", "samples/batch_accuracy", "samples/batch_mean_reward",
                "rollouts/boxed_rate", "groups/frac_zero_variance", "time/generation"):
        assert all(key in r for r in rows[1:]), key
    assert "eval/accuracy" in rows[0] and "eval/accuracy" in rows[-1]
    trained = [r for r in rows if "train/loss" in r]
    print("[tinker] RL steps: " + "; ".join(
        f"{r['step']}: reward {r['reward/mean']:+.3f} acc {r['samples/batch_accuracy']:.2f}"
        + (f" loss {r['train/loss']:.4f} gap {r['train/sampler_logprob_gap']:.1e}"
           if "train/loss" in r else " (no informative group)") for r in rows[1:]))
    assert trained, "no step had an informative group: nothing was trained"
    assert all(r["train/sampler_logprob_gap"] < 1e-2 for r in trained)
    assert "[tinker rl] step 1" in out.stdout  # verbose=True prints the loss metrics
    samples = [json.loads(x) for x in (log_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 3 * 2 * 8
    for key in ("prompt", "completion", "reward", "advantage", "correct", "extracted_answer",
                "ground_truth"):
        assert key in samples[0], key
    assert {"step-2", "step-3"} <= {p.name for p in (log_dir / "checkpoints").iterdir()}
    # a sampling client from the saved weights answers
    from tinker import types

    from aimo3_recipe.models import load_tokenizer
    from aimo3_recipe.rl.rollouts import prompt_ids
    from aimo3_recipe.utils.tinker_sdk import connect, resolve

    sampler = json.loads((log_dir / "sampler.json").read_text())["sampler_path"]
    client = resolve(connect(url, MARKER_KEY).create_sampling_client(model_path=sampler))
    tok = load_tokenizer(str(model))
    got = client.sample(prompt=types.ModelInput.from_ints(prompt_ids(tok, "What is 2 + 3?", "cot")),
                        num_samples=1, sampling_params=types.SamplingParams(
                            max_tokens=12, temperature=0.0, stop=[tok.eos_token_id])).result()
    answer = tok.decode(got.sequences[0].tokens, skip_special_tokens=True)
    print(f"[tinker] the saved RL weights answer 'What is 2 + 3?' with {answer!r}")
    assert "boxed" in answer
    # the key reached no file the run wrote, nor its output
    leaks = [str(p) for p in log_dir.rglob("*") if p.is_file()
             and MARKER_KEY.encode() in p.read_bytes()]
    assert not leaks and MARKER_KEY not in out.stdout + out.stderr, leaks


def test_killed_sft_run_resumes_to_the_same_losses(tinker_server, short_data, clean_sft, tmp_path):
    url, model, _ = tinker_server
    _, reference = clean_sft
    log_dir = tmp_path / "sft-killed"
    args = {"model_name": model, "base_url": url, "log_dir": log_dir,
            "sft.dataset": short_data, "lora_rank": 8, "export": False, **SFT8}
    script = REPO / "aimo3_recipe" / "training" / "tinker_sft_math.py"
    env = {**os.environ, "TINKER_API_KEY": MARKER_KEY, "TINKER_TELEMETRY": "0"}
    proc = subprocess.Popen([sys.executable, str(script), *[f"{k}={v}" for k, v in args.items()]],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    metrics = log_dir / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 5:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    killed_at = len(metrics.read_text().splitlines())
    out = _cli("sft", args, MARKER_KEY)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "resumes from" in out.stderr + out.stdout
    rows = _metrics(log_dir)
    print(f"[tinker] killed after {killed_at} logged steps; resumed; steps "
          f"{[r['step'] for r in rows]}")
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert _losses(rows) == _losses(reference)


def test_faults_cost_no_step_and_duplicate_none(tinker_server, short_data, clean_sft, tmp_path,
                                               marker_key):
    from aimo3_recipe.training.tinker_sft_math import main

    _url, model, port = tinker_server
    _, reference = clean_sft
    proxy = FaultProxy(upstream_port=port, plan=FaultPlan(
        rate=0.25, seed=3, max_faults=30, delay_s=1.0,
        drops_on=("/api/v1/forward_backward", "/api/v1/optim_step"))).start()
    try:
        cfg = _cfg(proxy.url, model, tmp_path / "sft-faults", request_timeout=30.0,
                   **{"sft.dataset": str(short_data)}, **SFT8)
        main(cfg)
    finally:
        proxy.stop()
    rows = _metrics(cfg.log_dir)
    faults = {k: v for k, v in proxy.counts.items() if " " not in k}
    last = rows[-1]
    print(f"[tinker] injected {dict(proxy.counts)}; retries {last.get('tinker/retries', 0):.0f}, "
          f"recoveries {last.get('tinker/recoveries', 0):.0f}")
    assert sum(faults.values()) >= 5 and faults.get("drop", 0) >= 2
    assert last["tinker/recoveries"] >= 1  # a dropped step was restored and replayed
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert _losses(rows) == _losses(reference)  # same steps, none lost, none applied twice


def test_a_persistent_fault_stops_the_run_and_the_rerun_resumes(
        tinker_server, short_data, clean_sft, tmp_path):
    _url, model, port = tinker_server
    _, reference = clean_sft
    proxy = FaultProxy(upstream_port=port, plan=FaultPlan(persistent_after=30)).start()
    log_dir = tmp_path / "sft-persistent"
    args = {"model_name": model, "base_url": proxy.url, "log_dir": log_dir,
            "sft.dataset": short_data, "lora_rank": 8, "export": False, "retry_attempts": 3,
            "retry_seconds": 45, "request_timeout": 15, **SFT8}
    try:
        out = _cli("sft", args, MARKER_KEY)
        assert out.returncode == 1
        message = out.stderr.strip().splitlines()[-2:]
        print(f"[tinker] the run stopped with: {message}")
        # the 503s end the run after the retries; on a loaded machine an attempt may time out
        # first (the server answers slowly), which ends it the same way
        assert re.search(r"failed [1-3] times", out.stderr), out.stderr[-2000:]
        assert "HTTP 503" in out.stderr or "TimeoutError" in out.stderr
        assert "Rerun the same command" in out.stderr and MARKER_KEY not in out.stderr
        assert "Traceback" not in out.stderr
        done = len(_metrics(log_dir))
        assert 0 < done < 10
        proxy.set_plan(FaultPlan())  # the fault goes away
        out = _cli("sft", args, MARKER_KEY)
        assert out.returncode == 0, out.stderr[-3000:]
    finally:
        proxy.stop()
    rows = _metrics(log_dir)
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert _losses(rows) == _losses(reference)


def test_config_never_holds_the_key(tinker_server, tmp_path, marker_key):
    from aimo3_recipe.training.tinker_config import TinkerTrainConfig

    assert not any("key" in f.name for f in dataclasses.fields(TinkerTrainConfig))

"""Tinker pieces without a server: row conversion on hand-computed numbers, retries, secret
redaction, the SDK adapter (against the installed SDK and, where the test server's venv
exists, against tinker 0.38 there), and both CLIs' --help."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from aimo3_recipe.rl.batch import RLBatch
from aimo3_recipe.rl.tinker_backend import grad_norm, rl_rows, sft_rows
from aimo3_recipe.utils import tinker_sdk
from aimo3_recipe.utils.tinker_sdk import Retrier, RetryPolicy, TinkerServiceError

REPO = Path(__file__).resolve().parents[1]


def _batch() -> RLBatch:
    # one row: 2 prompt tokens, 3 sampled (the middle one tool output), 1 pad
    return RLBatch(input_ids_B_L=torch.tensor([[5, 6, 7, 8, 9, 0]]),
                   attention_mask_B_L=torch.tensor([[1, 1, 1, 1, 1, 0]]),
                   loss_mask_B_L=torch.tensor([[0.0, 0.0, 1.0, 0.0, 1.0, 0.0]]),
                   sampler_logprobs_B_L=torch.tensor([[0.0, 0.0, -0.5, 0.0, -1.0, 0.0]]),
                   advantages_B=torch.tensor([0.6]))


def test_rl_rows_shift_targets_and_scale_advantages_by_step_tokens():
    (row,) = rl_rows(_batch(), None, num_tokens=4)
    assert row.model_input == [5, 6, 7, 8] and row.target_tokens == [6, 7, 8, 9]
    assert row.logprobs == [0.0, -0.5, 0.0, -1.0]  # sampler's, where trained
    assert row.advantages == pytest.approx([0.0, 0.15, 0.0, 0.15])  # 0.6 / 4 on trained tokens


def test_rl_rows_with_old_logprobs_and_tis():
    old = torch.tensor([[0.0, 0.0, -0.4, 0.0, -1.5, 0.0]])
    (row,) = rl_rows(_batch(), old, num_tokens=2, tis_cap=1.05)
    assert row.logprobs == pytest.approx([0.0, -0.4, 0.0, -1.5])
    # TIS weights min(exp(old - sampler), 1.05): exp(0.1) = 1.105 -> 1.05; exp(-0.5) = 0.607
    assert row.advantages == pytest.approx([0.0, 0.3 * 1.05, 0.0, 0.3 * 0.60653066])


def test_sft_rows_weight_only_labelled_targets():
    (row,) = sft_rows([[1, 2, 3, 4]], [[-100, -100, 3, 4]], scale=0.5)
    assert row.model_input == [1, 2, 3] and row.target_tokens == [2, 3, 4]
    assert row.weights == [0.0, 0.5, 0.5]


def test_grad_norm_reads_any_service_name():
    assert grad_norm({"skyrl.ai/grad_norm": 2.5, "lr": 1}) == 2.5
    assert grad_norm({}) != grad_norm({})  # nan


def test_retrier_retries_transient_errors_then_succeeds():
    calls, failures, sleeps = [], [], []
    r = Retrier(RetryPolicy(max_attempts=4, base_delay=0.5), sleep=sleeps.append)

    def fn():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("peer reset")
        return "ok"

    assert r.call("optim_step", fn, on_failure=failures.append) == "ok"
    assert len(calls) == 3 and len(failures) == 2 and r.stats["tinker/retries"] == 2
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0  # full jitter under 0.5 * 2^k


def test_retrier_gives_up_naming_the_operation():
    r = Retrier(RetryPolicy(max_attempts=3), sleep=lambda s: None)
    with pytest.raises(TinkerServiceError, match=r"forward_backward failed 3 times.*TimeoutError"):
        r.call("forward_backward", lambda: (_ for _ in ()).throw(TimeoutError("slow")))


def test_retrier_does_not_retry_a_bad_request():
    calls = []

    def fn():
        calls.append(1)
        raise ValueError("bad datum")

    with pytest.raises(TinkerServiceError, match="sample failed: ValueError"):
        Retrier(sleep=lambda s: None).call("sample", fn)
    assert len(calls) == 1


def test_redact_removes_keys_from_messages(monkeypatch):
    monkeypatch.setenv("TINKER_API_KEY", "tml-marker-abcdef123456")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-marker-987654")
    text = "401 for key tml-marker-abcdef123456 and wandb-marker-987654"
    assert "marker" not in tinker_sdk.redact(text)


def test_api_key_from_dotenv(tmp_path, monkeypatch):
    pytest.importorskip("dotenv")
    monkeypatch.delenv("TINKER_API_KEY", raising=False)
    (tmp_path / ".env").write_text("TINKER_API_KEY=tml-from-dotenv-1234\n")
    assert tinker_sdk.load_api_key(tmp_path / ".env") == "tml-from-dotenv-1234"
    import os

    assert "TINKER_API_KEY" not in os.environ  # read, not exported


def test_split_tinker_path():
    assert tinker_sdk.split_tinker_path("tinker://m1/sampler_weights/final") == ("m1", "final")
    assert tinker_sdk.split_tinker_path("tinker://m1/final") == ("m1", "final")
    with pytest.raises(ValueError):
        tinker_sdk.split_tinker_path("s3://x")


def test_resolve_passes_clients_through_and_unwraps_futures():
    import concurrent.futures

    client = object()
    assert tinker_sdk.resolve(client) is client
    fut: concurrent.futures.Future = concurrent.futures.Future()
    fut.set_result(client)
    assert tinker_sdk.resolve(fut) is client


SDK_038_CHECK = textwrap.dedent("""
    import concurrent.futures, sys
    sys.path.insert(0, {repo!r})
    from importlib.metadata import version
    from tinker.lib.public_interfaces.api_future import AwaitableConcurrentFuture
    from tinker.lib.public_interfaces.backcompat_training_client_future import (
        BackcompatTrainingClientFuture)
    from aimo3_recipe.utils.tinker_sdk import resolve
    inner = concurrent.futures.Future()
    client = object()
    inner.set_result(client)
    wrapped = BackcompatTrainingClientFuture(AwaitableConcurrentFuture(inner))
    assert resolve(wrapped) is client, resolve(wrapped)
    print("resolved on tinker", version("tinker"))
""")


def test_resolve_unwraps_sdk_038_client_futures():
    """What create_lora_training_client returns on SDK 0.38 (in the server's venv)."""
    py = REPO / ".venv-skyrl" / "bin" / "python"
    if not py.is_file():
        pytest.skip("no .venv-skyrl (tests/tinker_server/setup.sh) with tinker 0.38")
    out = subprocess.run([str(py), "-c", SDK_038_CHECK.format(repo=str(REPO))],
                         capture_output=True, text=True, timeout=120, check=False)
    if "No module named 'tinker.lib.public_interfaces.backcompat" in out.stderr:
        pytest.skip("the server venv's tinker has no client futures (an SDK before 0.3x)")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resolved on tinker 0.3" in out.stdout


@pytest.mark.parametrize("kind", ["sft", "rl"])
def test_cli_help_lists_the_spec_options(kind):
    pytest.importorskip("chz")
    script = REPO / "aimo3_recipe" / "training" / f"tinker_{kind}_math.py"
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True,
                         text=True, timeout=120, check=False)
    text = out.stdout + out.stderr
    for option in ("model_name", "stage", "log_dir", "max_samples", "batch_size", "group_size",
                   "verbose", "wandb_project", "wandb_name", "save_samples", "sft.save_steps",
                   "rl.save_steps", "rl.loss.tis_cap"):
        assert option in text, f"{option} missing from {kind} --help:\n{text[:2000]}"

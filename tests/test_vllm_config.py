"""One vLLM engine group for every command (issue 23 item 2, issue 22 item 2, issue 23 item 3).

What reaches `vllm.LLM(...)` is captured by replacing `vllm.LLM` with a recorder (no engine
starts, so these run in seconds on CPU); CUDA is faked where the CUDA-only arguments (GPU
memory share, sleep mode) are the point. The real engine start with these arguments is the
GPU check's job (bench/gpu_check_vllm.py says what it can and cannot check without vLLM).
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from aimo3_recipe.exceptions import ConfigError, MissingDependencyError
from aimo3_recipe.inference.vllm_config import (
    RolloutVLLMConfig,
    VLLMConfig,
    check_weight_updates,
    llm_kwargs,
    vllm_config_of,
    vllm_version,
)
from aimo3_recipe.rl.config import LossConfig

vllm = pytest.importorskip("vllm")


class RecordingLLM:
    """Stands in for vllm.LLM: records its keyword arguments and the sleep/wake calls."""

    calls: list[dict[str, Any]] = []

    def __init__(self, **kwargs: Any) -> None:
        RecordingLLM.calls.append(kwargs)
        self.kwargs = kwargs
        self.events: list[tuple] = []
        self.llm_engine = types.SimpleNamespace(
            model_config=types.SimpleNamespace(dtype=kwargs.get("dtype", "auto")))

    def sleep(self, level: int = 1) -> None:
        self.events.append(("sleep", level))

    def wake_up(self, tags=None) -> None:
        self.events.append(("wake_up", tags))

    def collective_rpc(self, method, kwargs=None):
        weights = kwargs.get("weights_iterator")
        self.events.append((method, None if weights is None else [k for k, _ in weights]))

    def reset_prefix_cache(self) -> None:
        self.events.append(("reset_prefix_cache",))


@pytest.fixture
def recorded(monkeypatch):
    RecordingLLM.calls = []
    monkeypatch.setattr(vllm, "LLM", RecordingLLM)
    return RecordingLLM.calls


@pytest.fixture
def fake_cuda(monkeypatch):
    from aimo3_recipe.inference import vllm_engine

    monkeypatch.setattr(vllm_engine, "_has_cuda", lambda: True)


def test_group_reaches_llm_kwargs_from_evaluate(recorded, fake_cuda, tiny_model_dir):
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import build_engine

    cfg = EvalConfig(model=str(tiny_model_dir), use_vllm=True, tensor_parallel_size=2,
                     quantization="fp8", kv_cache_dtype="fp8", gpu_memory_utilization=0.5)
    build_engine(cfg, max_tokens=3000)
    kw = recorded[-1]
    assert kw["tensor_parallel_size"] == 2 and kw["quantization"] == "fp8"
    assert kw["kv_cache_dtype"] == "fp8" and kw["gpu_memory_utilization"] == 0.5
    assert kw["max_model_len"] == 5048  # unset: room for the prompt and 3000 tokens
    assert "enable_sleep_mode" not in kw and "data_parallel_size" not in kw


def test_group_reaches_llm_kwargs_from_generate_and_the_solver(recorded, fake_cuda,
                                                               tiny_model_dir):
    from aimo3_recipe.inference.aimo import AIMOSolver, SolverConfig
    from aimo3_recipe.inference.generate import GenerationConfig, MathGenerator

    MathGenerator(GenerationConfig(model_name_or_path=str(tiny_model_dir), use_vllm=True,
                                   quantization="awq", max_model_len=8192))
    assert recorded[-1]["quantization"] == "awq" and recorded[-1]["max_model_len"] == 8192
    solver = AIMOSolver(SolverConfig(model_name_or_path=str(tiny_model_dir), use_vllm=True,
                                     tensor_parallel_size=4, kv_cache_dtype="fp8"))
    solver.engine  # noqa: B018 - the lazy load builds the engine
    kw = recorded[-1]
    assert kw["tensor_parallel_size"] == 4 and kw["kv_cache_dtype"] == "fp8"
    assert kw["max_model_len"] == 65536 and kw["gpu_memory_utilization"] == 0.9


def test_rl_rollout_engine_takes_the_colocated_defaults(recorded, fake_cuda, tiny_model_dir,
                                                        monkeypatch):
    """Issue 22 item 2: RL asked for vLLM's 0.85 of a GPU the policy already sits on, with
    a hard-coded 4096 window and no sleep mode."""
    from aimo3_recipe.training.rl_math import RLMathConfig, _rollout_engine

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    model = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))
    engine = _rollout_engine(RLMathConfig(model_name_or_path=str(tiny_model_dir),
                                          use_vllm=True), model)
    kw = recorded[-1]
    assert kw["gpu_memory_utilization"] == 0.3 and kw["max_model_len"] == 4096
    assert kw["enable_sleep_mode"] is True and engine.sleep_mode
    _rollout_engine(RLMathConfig(model_name_or_path=str(tiny_model_dir), use_vllm=True,
                                 gpu_memory_utilization=0.2, max_model_len=8192,
                                 enable_sleep_mode=False), model)
    kw = recorded[-1]
    assert kw["gpu_memory_utilization"] == 0.2 and kw["max_model_len"] == 8192
    assert "enable_sleep_mode" not in kw


def test_train_cli_carries_the_rl_engine_group():
    from aimo3_recipe.config import config_from_args
    from aimo3_recipe.training.config import TrainConfig
    from aimo3_recipe.training.rl_math import rl_config
    from aimo3_recipe.training.train import build_parser

    args = build_parser().parse_args([
        "--stage", "rl", "--rl.vllm.gpu-memory-utilization", "0.25",
        "--rl.vllm.max-model-len", "6000", "--rl.vllm.tensor-parallel-size", "1",
        "--rl.vllm.quantization", "fp8"])
    engine = rl_config(config_from_args(TrainConfig, args)).rl.vllm
    assert (engine.gpu_memory_utilization, engine.max_model_len, engine.quantization) == \
        (0.25, 6000, "fp8")
    assert TrainConfig().rl.vllm.gpu_memory_utilization == 0.3
    assert TrainConfig().rl.vllm.enable_sleep_mode


def test_cpu_passes_no_cuda_only_arguments_and_says_sleep_is_off(recorded, tiny_model_dir,
                                                                 capsys):
    from aimo3_recipe.inference import vllm_engine

    if vllm_engine._has_cuda():
        pytest.skip("checks the CPU platform")
    eng = vllm_engine.VLLMEngine(tiny_model_dir, config=RolloutVLLMConfig())
    kw = recorded[-1]
    assert "gpu_memory_utilization" not in kw and "enable_sleep_mode" not in kw
    eng.sleep()
    eng.wake_up()
    assert eng.llm.events == []  # no-ops: vLLM's CPU worker has no sleep mode
    assert "sleep mode: not on this platform" in capsys.readouterr().err


def test_sleep_and_wake_around_training_steps(recorded, fake_cuda, tiny_model_dir,
                                              monkeypatch):
    """LocalBackend puts vLLM to sleep before the trainer's forward passes and wakes it for
    the weight sync (weights first, then the KV cache) and the next rollouts."""
    import torch

    from aimo3_recipe.inference.vllm_engine import VLLMEngine
    from aimo3_recipe.rl.batch import RLBatch
    from aimo3_recipe.rl.local_backend import LocalBackend
    from aimo3_recipe.testing import make_tiny_model, make_tiny_tokenizer

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    eng = VLLMEngine(tiny_model_dir, config=RolloutVLLMConfig())
    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok)
    from accelerate import Accelerator

    backend = LocalBackend(model, tok, learning_rate=1e-3, vllm_engine=eng,
                           accelerator=Accelerator(cpu=True))
    assert backend.sampler() is eng and eng.llm.events == []  # awake from the start
    ids = torch.tensor([[1, 2, 3, 4]])
    batch = RLBatch(input_ids_B_L=ids, attention_mask_B_L=torch.ones_like(ids),
                    loss_mask_B_L=torch.tensor([[0.0, 1.0, 1.0, 1.0]]),
                    sampler_logprobs_B_L=torch.zeros(1, 4), advantages_B=torch.tensor([1.0]))
    backend.logprobs(batch)
    assert eng.llm.events == [("sleep", 1)] and eng.asleep
    backend.forward_backward(batch, old_logprobs=None, num_tokens=3.0, loss=LossConfig())
    backend.optim_step()
    assert eng.llm.events == [("sleep", 1)]  # asleep through the whole update
    backend.sync_sampler()
    names = eng.llm.events[2][1]
    assert eng.llm.events[1] == ("wake_up", ["weights"])
    assert eng.llm.events[2][0] == "reload_weights" and "lm_head.weight" in names
    assert eng.llm.events[4] == ("wake_up", None) and not eng.asleep  # the rest: KV cache
    backend.sampler()
    assert len(eng.llm.events) == 5  # already awake: nothing more


def test_data_parallel_needs_torchrun(monkeypatch):
    cfg = VLLMConfig(data_parallel_size=2, tensor_parallel_size=2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ConfigError, match="torchrun --nproc-per-node 4"):
        llm_kwargs(cfg, on_cuda=True)
    monkeypatch.setenv("WORLD_SIZE", "4")
    kw = llm_kwargs(cfg, on_cuda=True)
    assert kw["data_parallel_size"] == 2
    assert kw["distributed_executor_backend"] == "external_launcher"


def test_bad_values_are_errors_naming_the_field():
    with pytest.raises(ConfigError, match="gpu_memory_utilization"):
        VLLMConfig(gpu_memory_utilization=1.5)
    with pytest.raises(ConfigError, match="kv_cache_dtype"):
        VLLMConfig(kv_cache_dtype="int3")
    with pytest.raises(ConfigError, match="quantization"):
        VLLMConfig(quantization="magic")
    from aimo3_recipe.evaluation.config import EvalConfig

    with pytest.raises(ConfigError, match="tensor_parallel_size"):
        EvalConfig(tensor_parallel_size=0)
    assert vllm_config_of(EvalConfig(kv_cache_dtype="fp8")).kv_cache_dtype == "fp8"


def test_old_vllm_fails_at_engine_start_with_the_version_needed(recorded, tiny_model_dir,
                                                                monkeypatch):
    """Issue 23 item 3: vllm 0.10-0.15 workers' reload_weights takes no weights: it failed
    with a TypeError at the first weight sync, mid-run."""
    from aimo3_recipe.inference.vllm_engine import VLLMEngine

    assert vllm_version(types.SimpleNamespace(__version__="0.16.0rc1.dev3+gabc")) == (0, 16)
    monkeypatch.setattr(vllm, "__version__", "0.11.0")
    with pytest.raises(MissingDependencyError, match=r"vllm>=0\.16"):
        VLLMEngine(tiny_model_dir, weight_updates=True)
    eng = VLLMEngine(tiny_model_dir)  # inference only: starts
    with pytest.raises(MissingDependencyError, match=r"vllm>=0\.16"):
        eng.reload_weights()
    assert not [e for e in eng.llm.events if e[0] == "reload_weights"]
    monkeypatch.setattr(vllm, "__version__", "0.32.0")
    check_weight_updates(vllm)  # the installed worker takes weights_iterator


def test_evaluate_refuses_data_parallel_it_cannot_split():
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import validate

    with pytest.raises(ConfigError, match="tensor-parallel-size"):
        validate(EvalConfig(data_parallel_size=2))
    validate(EvalConfig(tensor_parallel_size=2))


def test_pipeline_engine_checks_the_version_at_start(recorded, tiny_model_dir, monkeypatch):
    """The pipeline reloads each stage's weights into one evaluation engine: refused at
    build time on a vLLM without weights_path (it was a TypeError at the second model)."""
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.evaluation.evaluate import build_engine

    monkeypatch.setattr(vllm, "__version__", "0.15.1")
    cfg = EvalConfig(model=str(tiny_model_dir), use_vllm=True)
    with pytest.raises(MissingDependencyError, match=r"vllm>=0\.16"):
        build_engine(cfg, 100, weight_updates=True)
    build_engine(cfg, 100)  # a plain evaluation does not need it


def test_off_policy_rollouts_turn_sleep_mode_off(recorded, fake_cuda, tiny_model_dir,
                                                monkeypatch):
    """The backend puts vLLM to sleep before every update; with rollouts for the next step
    decoding on it meanwhile (max_steps_off_policy > 0) the engine must stay awake."""
    from aimo3_recipe.training.rl_math import RLMathConfig, _rollout_engine

    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    model = types.SimpleNamespace(device=types.SimpleNamespace(type="cuda"))
    cfg = RLMathConfig(model_name_or_path=str(tiny_model_dir), use_vllm=True,
                       max_steps_off_policy=1)
    engine = _rollout_engine(cfg, model)
    assert "enable_sleep_mode" not in recorded[-1] and not engine.sleep_mode
    assert cfg.rl.vllm.enable_sleep_mode  # the user's config is left as it was

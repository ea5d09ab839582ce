"""What this machine's CPU can do, and the two choices that depend on it: vLLM's dtype on CPU
and whether `use_vllm="auto"` picks vLLM.

Why: measured on an AMD EPYC with AVX2 only (no AVX-512, no BF16, no AMX), 64 prompts x 4
samples, 128 tokens, embedded SmolLM2-135M: transformers (fp32) 115-117 tok/s, vLLM in bf16
(its CPU default) 24 tok/s, vLLM in fp32 180-194 tok/s. bf16 only pays where the CPU computes
it natively (AVX512-BF16 or AMX-BF16); elsewhere it is emulated and five times slower. vLLM in
fp32 was still 1.6x transformers on that CPU (and ~4x on a 2-core AVX-512 machine), so on any
x86 CPU with AVX2 or better vLLM is the fast engine.

Limits: flags are read from Linux's /proc/cpuinfo; elsewhere (macOS, Windows) no native bf16
is assumed. aarch64's `bf16` feature counts as native bf16 but vLLM speed on ARM was never
measured here, so `auto` does not pick vLLM there.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from pathlib import Path

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.utils.notice import notice

# CPU flags (as /proc/cpuinfo spells them) that compute bf16 natively
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")
# x86 vector extensions on which vLLM's CPU backend was measured faster than transformers
FAST_VLLM_X86_FLAGS = ("avx2", "avx512f")


@dataclass(frozen=True)
class CpuCapability:
    arch: str  # platform.machine(): x86_64, aarch64, arm64...
    model: str  # the CPU's model name ("" when unknown)
    isa: str  # torch's CPU dispatch level (AVX512, AVX2, DEFAULT, ...; "" without torch)
    flags: frozenset[str]  # CPU feature flags from /proc/cpuinfo (empty when unreadable)

    @property
    def bf16_flags(self) -> list[str]:
        """The native-bf16 flags this CPU has."""
        return [f for f in BF16_FLAGS if f in self.flags]

    @property
    def native_bf16(self) -> bool:
        return bool(self.bf16_flags)

    def describe(self) -> str:
        """One line for logs and benchmark headers."""
        bf16 = f"yes ({', '.join(self.bf16_flags)})" if self.native_bf16 else "no (emulated, slow)"
        vec = [f for f in ("avx2", "avx512f", "amx_tile") if f in self.flags]
        parts = [f"CPU {self.model or 'unknown model'} ({self.arch})",
                 f"torch ISA {self.isa or 'unknown'}",
                 f"vector flags {','.join(vec) or 'none found'}", f"native bf16 {bf16}"]
        return ", ".join(parts)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) from the text of /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, frozenset(flags)


def _torch_isa() -> str:
    try:
        import torch

        return str(torch.backends.cpu.get_cpu_capability())
    except (ImportError, AttributeError, RuntimeError):
        return ""


def cpu_capability(cpuinfo: str | None = None, *, arch: str | None = None,
                   isa: str | None = None) -> CpuCapability:
    """This machine's CPU (arguments replace what is read, for tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    model, flags = parse_cpuinfo(cpuinfo)
    return CpuCapability(arch=arch if arch is not None else platform.machine(),
                         model=model or platform.processor(),
                         isa=_torch_isa() if isa is None else isa, flags=flags)


def vllm_cpu_dtype(requested: str | None = "auto",
                   cap: CpuCapability | None = None) -> tuple[str, str]:
    """(dtype, why) for vLLM on CPU: bfloat16 only where the CPU has native bf16, else
    float32. An explicit dtype is kept (with a warning in `why` for bf16 without support)."""
    cap = cap or cpu_capability()
    req = (requested or "auto").lower()
    if req in ("bf16", "bfloat16"):
        if cap.native_bf16:
            return "bfloat16", "bfloat16 as asked; the CPU has native bf16"
        return "bfloat16", ("bfloat16 as asked, but this CPU has no native bf16: expect ~5x "
                            "slower than float32 (dtype auto picks float32 here)")
    if req != "auto":
        return req, f"{req} as asked"
    if cap.native_bf16:
        return "bfloat16", f"auto: native bf16 ({', '.join(cap.bf16_flags)})"
    return "float32", "auto: no native bf16 on this CPU (bf16 is emulated, ~5x slower)"


def resolve_vllm_cpu_dtype(requested: str | None = "auto") -> str:
    """The dtype vLLM should use on this CPU, said once on stderr with the reason."""
    dtype, why = vllm_cpu_dtype(requested)
    notice(f"vLLM on CPU: dtype {dtype} ({why})")
    return dtype


def parse_use_vllm(value: bool | str | None) -> bool | str:
    """True, False or "auto" from a bool or the strings auto|true|false (CLI, YAML)."""
    if isinstance(value, bool):
        return value
    text = "auto" if value is None else str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"use_vllm (--use-vllm) must be auto, true or false; got {value!r}")


def vllm_is_fast_here(*, device: str, vllm_installed: bool,
                      cap: CpuCapability | None = None) -> tuple[bool, str]:
    """Whether `use_vllm="auto"` picks vLLM, and why: on CUDA, or on an x86 CPU with AVX2 or
    better, where vLLM is installed. `device` is the resolved device (cuda / cpu / mps)."""
    if not vllm_installed:
        return False, "vLLM is not installed"
    if device.startswith("cuda"):
        return True, "CUDA"
    if device != "cpu":
        return False, f"vLLM does not run on {device}"
    cap = cap or cpu_capability()
    fast = [f for f in FAST_VLLM_X86_FLAGS if f in cap.flags]
    if cap.arch.lower() in ("x86_64", "amd64") and fast:
        return True, f"x86 CPU with {'/'.join(fast)} (vLLM measured 1.6-4x transformers)"
    return False, f"vLLM speed on this CPU ({cap.arch}, no AVX2) was never measured"


def choose_vllm(use_vllm: bool | str | None, device: str) -> tuple[bool, str]:
    """Resolve `use_vllm` (True / False / "auto") into (use vLLM?, why) on this machine;
    `device` is the resolved one (models.select_device: cuda / cpu / mps)."""
    choice = parse_use_vllm(use_vllm)
    if choice is not True and choice is not False:
        installed = importlib.util.find_spec("vllm") is not None
        fast, why = vllm_is_fast_here(device=device, vllm_installed=installed)
        return fast, f"auto: {why}"
    return choice, "asked for" if choice else "use_vllm=false"

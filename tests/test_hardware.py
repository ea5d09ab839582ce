"""CPU capability detection, vLLM's dtype on CPU, and `use_vllm="auto"`, on fake cpuinfo."""

from __future__ import annotations

import pytest

from aimo3_recipe.exceptions import ConfigError
from aimo3_recipe.utils import hardware
from aimo3_recipe.utils.hardware import (
    choose_vllm,
    cpu_capability,
    parse_cpuinfo,
    parse_use_vllm,
    vllm_cpu_dtype,
    vllm_is_fast_here,
)

# abridged /proc/cpuinfo of the machines in the issue
EPYC_AVX2 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni
processor\t: 1
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2 sha_ni
"""
AVX512_BF16 = ("model name\t: AMD EPYC 9R14\nflags\t\t: sse avx avx2 avx512f avx512bw avx512_vnni "
               "avx512_bf16\n")
SAPPHIRE_RAPIDS = ("model name\t: Intel(R) Xeon(R) Platinum 8488C\nflags\t\t: avx2 avx512f "
                   "amx_tile amx_int8 amx_bf16\n")
AVX512_NO_BF16 = "model name\t: Intel Xeon Skylake\nflags\t\t: avx2 avx512f avx512bw avx512vl\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\nCPU part\t: 0xd40\n"


def cap(text: str, arch: str = "x86_64", isa: str = "AVX2"):
    return cpu_capability(text, arch=arch, isa=isa)


def test_parse_cpuinfo_reads_model_and_flags():
    model, flags = parse_cpuinfo(EPYC_AVX2)
    assert model == "AMD EPYC 7R13 Processor"
    assert {"avx2", "fma"} <= flags and "avx512f" not in flags
    assert parse_cpuinfo(GRAVITON3)[1] >= {"asimd", "bf16"}  # ARM calls them Features
    assert parse_cpuinfo("") == ("", frozenset())


@pytest.mark.parametrize("text, native", [
    (EPYC_AVX2, False), (AVX512_NO_BF16, False), (AVX512_BF16, True), (SAPPHIRE_RAPIDS, True)])
def test_native_bf16_needs_avx512_bf16_or_amx_bf16(text, native):
    assert cap(text).native_bf16 is native


def test_vllm_cpu_dtype_is_bf16_only_with_native_bf16():
    assert vllm_cpu_dtype("auto", cap(EPYC_AVX2))[0] == "float32"
    assert vllm_cpu_dtype(None, cap(AVX512_NO_BF16))[0] == "float32"
    dtype, why = vllm_cpu_dtype("auto", cap(AVX512_BF16))
    assert dtype == "bfloat16" and "avx512_bf16" in why
    assert vllm_cpu_dtype("auto", cap(SAPPHIRE_RAPIDS)) == ("bfloat16",
                                                            "auto: native bf16 (amx_bf16)")
    # an explicit choice is kept; bf16 without support says what it costs
    dtype, why = vllm_cpu_dtype("bfloat16", cap(EPYC_AVX2))
    assert dtype == "bfloat16" and "no native bf16" in why and "5x" in why
    assert vllm_cpu_dtype("float32", cap(AVX512_BF16))[0] == "float32"


def test_describe_is_one_line_naming_the_capability():
    line = cap(EPYC_AVX2).describe()
    assert "\n" not in line
    assert "AMD EPYC 7R13" in line and "AVX2" in line and "native bf16 no" in line
    assert "native bf16 yes (amx_bf16)" in cap(SAPPHIRE_RAPIDS, isa="AMX").describe()
    # the real machine: whatever it is, one line
    assert "\n" not in cpu_capability().describe()


def test_resolve_logs_which_dtype_and_why(monkeypatch, capsys):
    from aimo3_recipe.utils import notice

    monkeypatch.setattr(notice, "_seen", set())
    monkeypatch.setattr(hardware, "cpu_capability", lambda: cap(EPYC_AVX2))
    assert hardware.resolve_vllm_cpu_dtype("auto") == "float32"
    assert "vLLM on CPU: dtype float32 (auto: no native bf16" in capsys.readouterr().err


@pytest.mark.parametrize("value, expected", [
    ("auto", "auto"), (None, "auto"), (True, True), (False, False), ("true", True),
    ("False", False), ("0", False), (" AUTO ", "auto")])
def test_parse_use_vllm(value, expected):
    assert parse_use_vllm(value) == expected


def test_parse_use_vllm_rejects_other_words():
    with pytest.raises(ConfigError, match="must be auto, true or false; got 'sometimes'"):
        parse_use_vllm("sometimes")


def test_auto_picks_vllm_on_cuda_and_x86_cpus_with_avx2():
    assert vllm_is_fast_here(device="cuda", vllm_installed=True)[0] is True
    assert vllm_is_fast_here(device="cpu", vllm_installed=True, cap=cap(EPYC_AVX2))[0] is True
    assert vllm_is_fast_here(device="cpu", vllm_installed=True, cap=cap(AVX512_BF16))[0] is True


@pytest.mark.parametrize("kw, reason", [
    (dict(device="cuda", vllm_installed=False), "not installed"),
    (dict(device="mps", vllm_installed=True), "does not run on mps"),
    (dict(device="cpu", vllm_installed=True, cap=None), "never measured"),
])
def test_auto_falls_back_to_transformers_and_says_why(kw, reason):
    if "cap" in kw:
        kw["cap"] = cap(GRAVITON3, arch="aarch64", isa="SVE256")
    fast, why = vllm_is_fast_here(**kw)
    assert fast is False and reason in why


def test_choose_vllm_keeps_explicit_choices(monkeypatch):
    monkeypatch.setattr(hardware, "vllm_is_fast_here", lambda **kw: pytest.fail("not consulted"))
    assert choose_vllm(True, "cpu")[0] is True and choose_vllm("false", "cuda")[0] is False


def test_make_engine_auto_uses_transformers_without_vllm(monkeypatch, tiny_model_dir, capsys):
    import importlib.util

    from aimo3_recipe.inference.engine import make_engine
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.utils import notice

    monkeypatch.setattr(notice, "_seen", set())
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "vllm" else real(name, *a))
    engine = make_engine(str(tiny_model_dir), "auto", device="cpu")
    assert isinstance(engine, HFEngine)
    assert "engine: transformers (auto: vLLM is not installed)" in capsys.readouterr().err


def test_make_engine_auto_falls_back_when_vllm_does_not_import(monkeypatch, tiny_model_dir,
                                                               capsys):
    import sys

    from aimo3_recipe.inference.engine import make_engine
    from aimo3_recipe.inference.hf_engine import HFEngine
    from aimo3_recipe.utils import notice

    monkeypatch.setattr(notice, "_seen", set())
    monkeypatch.setattr(hardware, "vllm_is_fast_here", lambda **kw: (True, "test"))
    for var in ("VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND"):  # restored afterwards
        monkeypatch.setenv(var, "0")
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` fails
    engine = make_engine(str(tiny_model_dir), "auto", device="cpu")
    assert isinstance(engine, HFEngine)
    assert "vLLM is installed but did not import" in capsys.readouterr().err


def test_configs_take_use_vllm_as_auto_true_or_false():
    from aimo3_recipe.evaluation.config import EvalConfig
    from aimo3_recipe.inference.generate import GenerationConfig
    from aimo3_recipe.training.config import TrainConfig

    for cls in (EvalConfig, GenerationConfig, TrainConfig):
        assert cls().use_vllm == "auto"  # the default of long jobs
        assert cls(use_vllm="false").use_vllm is False and cls(use_vllm="TRUE").use_vllm is True
        with pytest.raises(ConfigError, match="auto, true or false"):
            cls(use_vllm="maybe")

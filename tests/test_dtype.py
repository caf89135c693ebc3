"""``dtype: auto``: bfloat16 only where the hardware runs it natively (espnet_blsp.utils.dtype)."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from espnet_blsp.llm.causal_lm import SpeechLLM
from espnet_blsp.utils import dtype as dt

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["float32", "bfloat16", "float16"])
def test_explicit_names_are_kept(name, monkeypatch):
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: False)
    assert dt.resolve_dtype_name(name, "cpu") == name


@pytest.mark.parametrize("native, want", [(True, "bfloat16"), (False, "float32")])
def test_auto_follows_the_cpu(native, want, monkeypatch):
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: native)
    assert dt.resolve_dtype_name("auto", "cpu") == want
    assert dt.resolve_dtype_name("auto", torch.device("cpu")) == want


def test_auto_on_a_device_that_is_not_there_is_float32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dt.resolve_dtype_name("auto", "cuda") == "float32"
    assert dt.resolve_dtype_name("auto", "meta") == "float32"


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="bf16.*choose from.*auto"):
        dt.resolve_dtype_name("bf16")


def test_cpuinfo_fallback(monkeypatch, tmp_path):
    """Without torch's probes the flags of /proc/cpuinfo decide."""
    for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.delattr(torch.cpu, n, raising=False)
    real_open = open
    for flags, want in (("fpu avx2 avx512f avx512_bf16", True), ("fpu avx2 fma", False)):
        info = tmp_path / f"cpuinfo_{want}"
        info.write_text(f"processor : 0\nflags : {flags}\n")
        monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(info if p == "/proc/cpuinfo" else p, *a, **k))
        assert dt.cpu_has_native_bf16() is want


def test_probe_agrees_with_cpuinfo():
    """Torch's own probe (used when present) says what the kernel's flags say."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    if not hasattr(torch.cpu, "_is_avx512_bf16_supported"):
        pytest.skip("this torch has no bf16 probe")
    assert dt.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & flags)


@pytest.mark.parametrize("native, want", [(True, torch.bfloat16), (False, torch.float32)])
def test_speech_llm_auto(tiny_llm, native, want, monkeypatch):
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert SpeechLLM(tiny_llm, dtype="auto").dtype == want
    with pytest.raises(ValueError, match="unknown LLM dtype 'fp8'"):
        SpeechLLM(tiny_llm, dtype="fp8")


def test_mini_configs_use_auto():
    """Every mini config's LLM follows the machine (bfloat16 on an AVX2-only CPU is ~30x slower)."""
    import yaml

    for cfg in sorted((REPO / "conf" / "mini").glob("train_*.yaml")):
        llm_conf = yaml.safe_load(cfg.read_text()).get("llm_conf") or {}
        assert llm_conf.get("dtype", "auto") == "auto", cfg.name


def test_run_sh_resolves_auto(monkeypatch):
    """run.sh's one-liner gives stage 3 the resolved name (its .done mark records it)."""
    code = "import sys; from espnet_blsp.utils.dtype import resolve_dtype_name as r; print(r(*sys.argv[1:]))"
    assert code in (REPO / "egs2" / "blsp" / "run.sh").read_text()
    out = subprocess.run([sys.executable, "-c", code, "auto", "cpu"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ("bfloat16" if dt.cpu_has_native_bf16() else "float32")


@pytest.mark.parametrize("native, want", [(True, torch.bfloat16), (False, torch.float32)])
def test_decoding_and_api_resolve_auto_for_their_device(tiny_exp, native, want, monkeypatch, tmp_path):
    """An exp trained with ``dtype: auto`` decodes (stage 5, api.load) in what the decode device runs."""
    import shutil

    import yaml

    from espnet_blsp import api
    from espnet_blsp.bin.blsp_inference import build_model

    exp = tmp_path / "exp_auto"
    shutil.copytree(tiny_exp, exp)
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    cfg["llm_conf"]["dtype"] = "auto"
    (exp / "config.yaml").write_text(yaml.safe_dump(cfg))
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: native)
    assert build_model(exp, torch.device("cpu"), None, load=True).llm.dtype == want
    assert api.load(exp, device="cpu").model.llm.dtype == want


def test_torch_dtype_is_the_one_table(monkeypatch):
    """Every name maps to its torch dtype; auto through resolve_dtype_name; unknown names name the setting."""
    assert dt.torch_dtype("float32") is torch.float32
    assert dt.torch_dtype("bfloat16") is torch.bfloat16
    assert dt.torch_dtype("float16") is torch.float16
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: False)
    assert dt.torch_dtype("auto", "cpu") is torch.float32
    monkeypatch.setattr(dt, "cpu_has_native_bf16", lambda: True)
    assert dt.torch_dtype("auto", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown speech encoder dtype 'fp16'; choose from"):
        dt.torch_dtype("fp16", what="speech encoder dtype")
    assert set(dt.NAMES) == {"auto"} | set(dt.TORCH_DTYPES)
    with pytest.raises(ValueError, match=r"unknown speech encoder dtype 'auto'; choose from \['float32'"):
        dt.torch_dtype("auto", what="speech encoder dtype", allow_auto=False)


def test_resolve_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dt.resolve_device("auto") == torch.device("cpu")
    assert dt.resolve_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dt.resolve_device("auto") == torch.device("cuda")
    assert dt.resolve_device("cpu") == torch.device("cpu")
    assert dt.resolve_device(torch.device("meta")) == torch.device("meta")

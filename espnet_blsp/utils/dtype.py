"""``dtype: auto``: bfloat16 where the hardware runs it natively, float32 elsewhere.

bfloat16 halves the memory of a frozen LLM and, with native support, speeds up its matmuls
(CUDA GPUs from Ampere on; x86 CPUs with AVX512-BF16 or AMX: ~2x over float32 at the mini
shapes). Without it, PyTorch's CPU kernels convert every operand: on an AVX2-only CPU (most
laptops, some cloud AMD EPYC hosts) a bfloat16 matmul of the mini LLM's shapes ran ~30x
slower than float32 (1.3 against 40 GFLOP/s on one thread, 2026-12-03), which turns the
30-minute mini run into hours. ``auto`` picks the fast one on each machine.
"""

import logging
from typing import Optional, Union

import torch

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
NAMES = ("auto",) + tuple(TORCH_DTYPES)


def cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 (torch's own probes; /proc/cpuinfo if absent)."""
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    probes = [p for p in probes if p is not None]
    if probes:
        return any(p() for p in probes)
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = set(f.read().split())
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & flags)


def resolve_device(name: Union[str, torch.device] = "auto") -> torch.device:
    """``auto``: CUDA when it is available, else the CPU; any other name as torch reads it."""
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def torch_dtype(name: str, device: Optional[Union[str, torch.device]] = None, what: str = "dtype",
                allow_auto: bool = True) -> torch.dtype:
    """The torch dtype of ``name`` (``auto`` resolved for ``device``, as ``resolve_dtype_name``).

    ``what`` names the setting in the error for an unknown name (e.g. "LLM dtype");
    ``allow_auto=False`` refuses ``auto`` for a setting that must name its dtype.
    """
    names = NAMES if allow_auto else tuple(TORCH_DTYPES)
    if name not in names:
        raise ValueError(f"unknown {what} {name!r}; choose from {list(names)}")
    return TORCH_DTYPES[resolve_dtype_name(name, device)]


def resolve_dtype_name(name: str, device: Optional[Union[str, torch.device]] = None) -> str:
    """``name`` itself, or for ``auto`` "bfloat16"/"float32" as ``device`` runs them.

    ``device`` None means the device the model will most likely run on: CUDA when it is
    available, else the CPU.
    """
    if name not in NAMES:
        raise ValueError(f"unknown dtype {name!r}; choose from {list(NAMES)}")
    if name != "auto":
        return name
    dev = resolve_device("auto" if device is None else device)
    if dev.type == "cuda":
        native, what = torch.cuda.is_available() and torch.cuda.is_bf16_supported(), "this GPU"
    else:
        cpu = dev.type == "cpu"
        native, what = cpu and cpu_has_native_bf16(), "this CPU (AVX512-BF16 or AMX)" if cpu else f"device {dev}"
    out = "bfloat16" if native else "float32"
    logging.info(f"dtype auto -> {out}: {'native' if native else 'no native'} bfloat16 on {what}")
    return out

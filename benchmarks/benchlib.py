"""Shared pieces of the benchmarks: random models at real shapes, timing, FLOP rate, memory, output.

Usage (from a benchmark script in this directory)::

    from benchlib import load_llm, make_whisper, pick_device, matmul_tflops, timed, PeakMemory
    device = pick_device("auto")                                      # cuda if available
    llm = load_llm("qwen-7b", device, lora_conf=None)                  # SpeechLLM, random weights
    enc = make_whisper("large-v2", device)                             # WhisperSpeechEncoder, frozen

Nothing is downloaded. Random models come from transformers configs:

- LLMs: :func:`stub_llm_dir` writes a checkpoint directory holding the config, a tokenizer
  (the tests' tiny byte-level BPE, :mod:`espnet_blsp.testing.tiny_llm`; its ids are valid in any
  larger vocabulary) and a safetensors file with ONE tensor. ``from_pretrained`` initialises
  every weight missing from the file at random (normal, std = ``initializer_range``) on the
  device in context, so ``SpeechLLM`` loads a 7B-shaped model in seconds with no 15 GB file.
- Whisper encoders: ``WhisperSpeechEncoder(config=...)`` built on the target device.

Shapes: ``*-7b`` and Whisper ``small``/``large-v2`` are the real ones (GPU); ``*-small`` and
Whisper ``cpu`` are the CPU shapes; ``*-tiny`` / ``tiny`` are for tests and ``--quick``.
"""

import atexit
import contextlib
import ctypes
import functools
import gc
import json
import os
import resource
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch

# LLM shapes: (architecture, config kwargs). Llama-2-7B (BLSP) and Qwen-7B (BLSP-KD).
def _llm_shape(arch: str, hidden: int, ffn: int, layers: int, heads: int, kv_heads: int, vocab: int,
               max_positions: int) -> tuple:
    return arch, dict(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers,
                      num_attention_heads=heads, num_key_value_heads=kv_heads, vocab_size=vocab,
                      max_position_embeddings=max_positions)


LLM_SHAPES: Dict[str, tuple] = {
    "llama2-7b": _llm_shape("llama", 4096, 11008, 32, 32, 32, 32000, 4096),
    "qwen-7b": _llm_shape("qwen2", 4096, 11008, 32, 32, 32, 151936, 8192),
    "llama-small": _llm_shape("llama", 256, 688, 4, 4, 4, 32000, 4096),
    "qwen-small": _llm_shape("qwen2", 256, 688, 4, 4, 4, 151936, 8192),
    "llama-tiny": _llm_shape("llama", 64, 128, 2, 4, 2, 2048, 4096),
    "qwen-tiny": _llm_shape("qwen2", 64, 128, 2, 4, 2, 2048, 4096),
}

# Whisper encoder shapes (the decoder is never built).
WHISPER_SHAPES: Dict[str, dict] = {
    "large-v2": dict(d_model=1280, encoder_layers=32, encoder_attention_heads=20, encoder_ffn_dim=5120),
    "small": dict(d_model=768, encoder_layers=12, encoder_attention_heads=12, encoder_ffn_dim=3072),
    "cpu": dict(d_model=256, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024),
    "tiny": dict(d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128),
}

CONTINUATION = "Continue the following text in a coherent and engaging style with less than 40 words."
ASR = "Please repeat the following words."


# ---------------------------------------------------------------------------------- devices
def pick_device(name: str = "auto") -> torch.device:
    """auto -> cuda if available, else cpu; cuda -> the current (LOCAL_RANK) GPU."""
    from espnet_blsp.utils.dtype import resolve_device

    name = resolve_device(name).type if name == "auto" else name
    if name == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device is available")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device(name)


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPU (as trained); float32 on CPU, where bf16 matmuls are slow."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def autocast(device: torch.device):
    """bf16 autocast on GPU, what ESPnet's trainer does with ``use_amp: true``; nothing on CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"CPU, {torch.get_num_threads()} threads, torch {torch.__version__}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------- models
@functools.lru_cache(maxsize=None)
def _tmp_root() -> str:
    """One temporary directory per process for the stub checkpoints, removed at exit."""
    root = tempfile.mkdtemp(prefix="espnet_blsp_bench_")
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def stub_llm_dir(shape: str, root: Optional[str] = None) -> str:
    """A checkpoint dir for ``LLM_SHAPES[shape]`` (a few kB): config, tokenizer, one-tensor
    safetensors; under ``root`` (default: a temporary directory removed at exit)."""
    from safetensors.torch import save_file

    from espnet_blsp.testing.tiny_llm import make_tiny_tokenizer

    arch, conf = LLM_SHAPES[shape]
    root = root or _tmp_root()
    out = Path(root) / shape
    if (out / "model.safetensors").is_file():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    tok = make_tiny_tokenizer(arch)
    ids = dict(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    if arch == "llama":
        from transformers import LlamaConfig as Config

        ids["bos_token_id"] = tok.bos_token_id
    else:
        from transformers import Qwen2Config as Config

        ids["bos_token_id"] = None
    Config(**conf, **ids).save_pretrained(out)
    tok.save_pretrained(out)
    # the final norm's weight (ones, as initialised); every other weight is "missing" -> random
    save_file({"model.norm.weight": torch.ones(conf["hidden_size"])}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    return str(out)


def load_llm(shape: str, device: torch.device, dtype: Optional[torch.dtype] = None,
             lora_conf: Optional[dict] = None, seed: int = 0, root: Optional[str] = None):
    """``SpeechLLM`` with random weights of ``shape``, built directly on ``device``."""
    import transformers

    from espnet_blsp.llm.causal_lm import SpeechLLM

    dtype = dtype or compute_dtype(device)
    name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}[dtype]
    path = stub_llm_dir(shape, root)
    torch.manual_seed(seed)
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # the (expected) "MISSING weights" report
    try:
        with torch.device(device):  # from_pretrained places and initialises the weights there
            llm = SpeechLLM(path, dtype=name, lora_conf=lora_conf)
    finally:
        transformers.logging.set_verbosity(verbosity)
    return llm.to(device)


def make_whisper(shape: str, device: torch.device, dtype: Optional[torch.dtype] = None,
                 freeze: bool = True, seed: int = 0):
    """A random ``WhisperSpeechEncoder`` of ``WHISPER_SHAPES[shape]`` (80 mel bins) on ``device``."""
    from espnet_blsp.encoders.whisper import WhisperSpeechEncoder

    config = dict(
        WHISPER_SHAPES[shape], num_mel_bins=80, decoder_layers=1, decoder_attention_heads=4,
        decoder_ffn_dim=64, vocab_size=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        decoder_start_token_id=1,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        enc = WhisperSpeechEncoder(config=config, freeze=freeze)
    enc.to(device)
    if freeze:
        enc.to(dtype or compute_dtype(device))
    return enc


@contextlib.contextmanager
def attention(modules: List[torch.nn.Module], implementation: str):
    """Switch HF models' attention implementation (e.g. to ``eager``) for the block."""
    previous = [m.config._attn_implementation for m in modules]
    for m in modules:
        m.set_attn_implementation(implementation)
    try:
        yield
    finally:
        for m, p in zip(modules, previous):
            m.set_attn_implementation(p)


def matmul_params(module: torch.nn.Module) -> int:
    """Weights used as matmul operands per token: every >= 2-D parameter except LoRA factors."""
    return sum(p.numel() for n, p in module.named_parameters() if p.dim() >= 2 and "lora_" not in n)


# ---------------------------------------------------------------------------------- systems
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
KD_WEIGHTS = dict(ce_weight=0.0, kl_resp_weight=1.0, kl_input_weight=1.0, cif_weight=1.0, temperature=2.0)
# BLSP: Whisper-small + CNN + Llama-2-7B; BLSP-KD: Whisper-large-v2 + CFormer + Qwen-7B
SYSTEMS: Dict[str, dict] = {
    "blsp": dict(llm="llama2-7b", whisper="small", adapter="cnn", lora=False, weights=dict(ce_weight=1.0)),
    "blsp_lora": dict(llm="llama2-7b", whisper="small", adapter="cnn", lora=True, weights=dict(ce_weight=1.0)),
    "kd": dict(llm="qwen-7b", whisper="large-v2", adapter="cformer", lora=False, weights=KD_WEIGHTS),
    "kd_lora": dict(llm="qwen-7b", whisper="large-v2", adapter="cformer", lora=True, weights=KD_WEIGHTS),
}
# real shape -> the shape used at each scale
SCALES: Dict[str, Dict[str, str]] = {
    "gpu": {"llama2-7b": "llama2-7b", "qwen-7b": "qwen-7b", "small": "small", "large-v2": "large-v2"},
    "cpu": {"llama2-7b": "llama-small", "qwen-7b": "qwen-small", "small": "cpu", "large-v2": "cpu"},
    "quick": {"llama2-7b": "llama-tiny", "qwen-7b": "qwen-tiny", "small": "tiny", "large-v2": "tiny"},
}


def scale_of(device: torch.device, quick: bool) -> str:
    """gpu (real shapes) | cpu (small shapes) | quick (tiny shapes, tests)."""
    return "quick" if quick else ("gpu" if device.type == "cuda" else "cpu")


def setup(args, defaults: Dict[str, dict]):
    """The common start of a benchmark: ``--threads``, the device and the scale, and the
    scale's defaults for every option left at None. Returns (device, scale)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    scale = scale_of(device, args.quick)
    for k, v in defaults[scale].items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return device, scale


def build_model(system: str, scale: str, device: torch.device, dropout: bool = True):
    """The ``BLSPModel`` of ``SYSTEMS[system]`` at ``scale``, assembled as ``build_blsp_model`` does
    (frozen encoder in the compute dtype, adapter float32 with the encoder's heads and FFN width,
    LLM + Partial LoRA r 16 / alpha 16 / dropout 0.05), on ``device``."""
    from espnet_blsp.adapters import build_adapter
    from espnet_blsp.espnet_model import BLSPModel

    spec, shapes = SYSTEMS[system], SCALES[scale]
    lora = None
    if spec["lora"]:
        r = 4 if scale == "quick" else 16
        lora = dict(r=r, alpha=r, dropout=0.05 if dropout else 0.0, target_modules=LORA_TARGETS)
    encoder = make_whisper(shapes[spec["whisper"]], device)
    llm = load_llm(shapes[spec["llm"]], device, lora_conf=lora)
    if spec["adapter"] == "cformer":
        layers = {"gpu": 4, "cpu": 2, "quick": 1}[scale]
        conf = dict(num_pre_layers=layers, num_post_layers=layers, dropout_rate=0.1 if dropout else 0.0,
                    attention_heads=encoder.num_heads, linear_units=encoder.ffn_dim)
    else:
        conf = dict(bottleneck_dim=16 if scale == "quick" else 512)
    torch.manual_seed(0)
    adapter = build_adapter(spec["adapter"], input_size=encoder.output_size(), output_size=llm.hidden_size, **conf)
    return BLSPModel(encoder, adapter.to(device), llm, **spec["weights"])


# ---------------------------------------------------------------------------------- timing
def timed(fn: Callable[[], object], device: torch.device, steps: int, warmup: int = 1) -> float:
    """Mean seconds per call of ``fn`` over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t) / steps


@functools.lru_cache(maxsize=None)
def matmul_tflops(device: torch.device, dtype: Optional[torch.dtype] = None, n: Optional[int] = None,
                  shape: Optional[tuple] = None) -> float:
    """Measured dense matmul rate (TFLOP/s) in ``dtype``: best of several n x n x n products, or
    of (m x k) @ (k x n) products for ``shape=(m, k, n)``. Measured once per argument set."""
    dtype = dtype or compute_dtype(device)
    n = n or (8192 if device.type == "cuda" else 1024)
    m, k, n = shape or (n, n, n)
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    reps = 20 if device.type == "cuda" else 3
    best = float("inf")
    for _ in range(3):
        best = min(best, timed(lambda: torch.matmul(a, b), device, reps, warmup=2))
    return 2 * m * k * n / best / 1e12


def _malloc_trim() -> None:
    """glibc's ``malloc_trim(0)`` (no-op elsewhere): return freed memory to the OS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block, in MB. CUDA: ``max_memory_allocated`` (absolute, weights included).
    CPU: the peak RSS above the RSS at entry (after ``malloc_trim``), sampled every 5 ms from
    /proc/self/statm (``ru_maxrss`` is a process-wide high-water mark and cannot be reset)."""

    def __init__(self, device: torch.device):
        self.device, self.mb = device, 0.0

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            _malloc_trim()  # hand freed heap pages back, so that RSS can show this block's peak
            self._base = self._peak = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        else:
            self._stop.set()
            self._thread.join()
            self.mb = (max(self._peak, self._rss()) - self._base) / 2**20
        return False

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the high-water mark (KiB on Linux/BSD)
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self._peak = max(self._peak, self._rss())


# ---------------------------------------------------------------------------------- output
def write_json(path: Optional[str], result: dict) -> None:
    """Write ``result`` to ``path`` (if given) as JSON."""
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


def random_ids(n: int, vocab: int, generator: torch.Generator, low: int = 10) -> List[int]:
    """``n`` random token ids in [low, vocab): stand-ins for transcripts and responses."""
    return torch.randint(low, vocab, (n,), generator=generator).tolist()

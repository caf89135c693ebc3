"""CTranslate2 Whisper (faster-whisper ``model.bin``) -> transformers checkpoint.

Usage::

    from espnet_blsp.assets.ct2_whisper import convert_ct2_whisper
    convert_ct2_whisper("ct2-whisper-base/", "assets/whisper-base/")   # model.bin, config.json, tokenizer.json
    # then, offline:
    model = WhisperForConditionalGeneration.from_pretrained("assets/whisper-base")
    model.generate(input_features, language="en", task="transcribe")

The project's own reader of CTranslate2's binary layout (little-endian)::

    u32 version | str spec name | u32 revision | u32 variable count
    per variable: str name | u8 rank | u32 x rank dims | u8 dtype | u32 byte count | raw bytes
    u32 alias count | (str alias, str target) x alias count
    str = u16 length (including a trailing NUL) + bytes
    dtype: 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16

Mapping to HF ``WhisperForConditionalGeneration`` (L = layer index)::

    encoder/conv{1,2}/{weight,bias}                 model.encoder.conv{1,2}
    encoder/position_encodings/encodings            model.encoder.embed_positions.weight
    {enc,dec}/layer_L/self_attention/linear_0       fused [q; k; v] rows -> self_attn.{q,k,v}_proj
    {enc,dec}/layer_L/self_attention/linear_1       self_attn.out_proj
    decoder/layer_L/attention/linear_0              encoder_attn.q_proj
    decoder/layer_L/attention/linear_1              fused [k; v] rows -> encoder_attn.{k,v}_proj
    decoder/layer_L/attention/linear_2              encoder_attn.out_proj
    .../ffn/linear_{0,1}, .../layer_norm/{gamma,beta}  fc{1,2}, *_layer_norm.{weight,bias}
    decoder/embeddings/weight                       model.decoder.embed_tokens.weight (= proj_out, tied)
    {encoder,decoder}/num_heads (int16 scalar)      encoder/decoder_attention_heads

HF has no k_proj bias; CTranslate2 stores zeros in that slot, which the reader checks
(a non-zero slot means the q,k,v order is not the one assumed, and conversion stops).

The checkpoint is saved as **float32** safetensors by default: the float16 source is
exactly representable, and transformers 5 loads a checkpoint in its stored dtype, so a
float16 file would run the encoder in float16 on CPU (slow, and lossy in LayerNorm).
``dtype="float16"`` halves the size for GPU-only use.
"""

import json
import logging
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np

# CTranslate2 dtype codes; 5 (bf16) has no numpy dtype and is widened to float32 on read
_CODE_TO_DTYPE: Dict[int, np.dtype] = {
    0: np.dtype("<f4"), 1: np.dtype("i1"), 2: np.dtype("<i2"), 3: np.dtype("<i4"), 4: np.dtype("<f2"),
}
_BF16 = 5
_DTYPE_TO_CODE: Dict[np.dtype, int] = {v: k for k, v in _CODE_TO_DTYPE.items()}
_FORMAT_VERSION = 6  # what CTranslate2 4.x writes; the reader accepts any version
_SPEC = "WhisperSpec"
_SAVE_DTYPES = ("float32", "float16")


class CT2Model(NamedTuple):
    """A parsed ``model.bin``: ``spec, variables, aliases = read_ct2_model_bin(path)``."""

    spec: str
    variables: Dict[str, np.ndarray]
    aliases: Dict[str, str]


class _Reader:
    """Bounds-checked little-endian reads over the whole file (errors name the file)."""

    def __init__(self, path: Path):
        self.path = path
        self.buf = path.read_bytes()
        self.pos = 0

    def take(self, n: int, what: str) -> memoryview:
        if self.pos + n > len(self.buf):
            raise ValueError(
                f"{self.path} is truncated: {what} needs {n} bytes at offset {self.pos}, the file has "
                f"{len(self.buf)} (a split asset may be missing a part)"
            )
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))

    def string(self, what: str) -> str:
        (n,) = self.unpack("H", what)
        raw = bytes(self.take(n, what))
        if not raw.endswith(b"\0"):
            raise ValueError(f"{self.path}: {what} at offset {self.pos - n} is not NUL-terminated")
        return raw[:-1].decode("utf-8")


def read_ct2_model_bin(path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin``; raises ValueError naming the file on a bad layout."""
    r = _Reader(Path(path))
    (_version,) = r.unpack("I", "the format version")
    spec = r.string("the spec name")
    _revision, count = r.unpack("II", "the revision and variable count")
    variables: Dict[str, np.ndarray] = {}
    for i in range(count):
        name = r.string(f"the name of variable {i}")
        (rank,) = r.unpack("B", f"the rank of {name}")
        dims = r.unpack(f"{rank}I", f"the dims of {name}") if rank else ()
        code, nbytes = r.unpack("BI", f"the dtype of {name}")
        if code != _BF16 and code not in _CODE_TO_DTYPE:
            raise ValueError(f"{path}: variable {name} has unknown dtype code {code}")
        itemsize = 2 if code == _BF16 else _CODE_TO_DTYPE[code].itemsize
        if nbytes != int(np.prod(dims, dtype=np.int64)) * itemsize:
            raise ValueError(f"{path}: variable {name} has {nbytes} bytes, dims {dims} need {np.prod(dims) * itemsize}")
        raw = r.take(nbytes, f"the data of {name}")
        if code == _BF16:  # bf16 is the top half of a float32
            arr = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_CODE_TO_DTYPE[code])
        variables[name] = arr.reshape(dims)
    aliases: Dict[str, str] = {}
    if r.pos < len(r.buf):  # files from CTranslate2 < 2.x end after the variables
        (n_alias,) = r.unpack("I", "the alias count")
        for i in range(n_alias):
            alias = r.string(f"alias {i}")
            aliases[alias] = r.string(f"the target of alias {alias}")
    return CT2Model(spec, variables, aliases)


def write_ct2_model_bin(
    path, spec_name: str, variables: Dict[str, np.ndarray], aliases: Optional[Dict[str, str]] = None
) -> None:
    """Write ``variables`` (f32/i8/i16/i32/f16 numpy arrays, scalars allowed) in the layout above."""

    def string(f, s: str) -> None:
        b = s.encode("utf-8") + b"\0"
        f.write(struct.pack("<H", len(b)) + b)

    with open(path, "wb") as f:
        f.write(struct.pack("<I", _FORMAT_VERSION))
        string(f, spec_name)
        f.write(struct.pack("<II", 1, len(variables)))
        for name, arr in variables.items():
            arr = np.asarray(arr)
            arr = arr if arr.flags.c_contiguous else arr.copy(order="C")  # ascontiguousarray makes scalars 1-d
            code = _DTYPE_TO_CODE.get(arr.dtype.newbyteorder("<"))
            if code is None:
                raise ValueError(f"variable {name}: dtype {arr.dtype} has no CTranslate2 code")
            string(f, name)
            f.write(struct.pack(f"<B{arr.ndim}I", arr.ndim, *arr.shape))
            f.write(struct.pack("<BI", code, arr.nbytes))
            f.write(arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes())
        aliases = aliases or {}
        f.write(struct.pack("<I", len(aliases)))
        for alias, target in aliases.items():
            string(f, alias)
            string(f, target)


def _num_layers(variables: Dict[str, np.ndarray], side: str) -> int:
    found = {int(m.group(1)) for k in variables if (m := re.match(side + r"/layer_(\d+)/", k))}
    if found != set(range(len(found))):
        raise ValueError(f"{side} layers are not numbered 0..N-1: {sorted(found)}")
    return len(found)


def ct2_to_hf_state_dict(model: CT2Model) -> Dict[str, np.ndarray]:
    """CTranslate2 Whisper variables -> {HF parameter name: float32 array}.

    Raises ValueError if a weight variable is left unmapped or a fused k-bias slot is
    non-zero (both mean the layout is not the one this converter knows).
    """
    variables, aliases = model.variables, model.aliases
    used = set()

    def g(name: str) -> np.ndarray:
        name = aliases.get(name, name)
        if name not in variables:
            raise ValueError(f"the CTranslate2 Whisper has no variable {name}")
        used.add(name)
        return variables[name].astype(np.float32)

    sd: Dict[str, np.ndarray] = {}

    def ln(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = g(f"{src}/gamma"), g(f"{src}/beta")

    def lin(dst: str, src: str) -> None:
        sd[f"{dst}.weight"], sd[f"{dst}.bias"] = g(f"{src}/weight"), g(f"{src}/bias")

    def split(dst: str, src: str, projs: List[str]) -> None:
        """Fused rows [p0; p1; ...] -> dst.{p}_proj; the k slot of the bias must be zero."""
        ws, bs = np.split(g(f"{src}/weight"), len(projs)), np.split(g(f"{src}/bias"), len(projs))
        for p, w, b in zip(projs, ws, bs):
            sd[f"{dst}.{p}_proj.weight"] = w
            if p == "k":
                if np.abs(b).max() > 0:
                    raise ValueError(f"{src}/bias has a non-zero k slot: the fused order is not {projs}")
            else:
                sd[f"{dst}.{p}_proj.bias"] = b

    def block(dst: str, src: str, cross: bool) -> None:
        ln(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        split(f"{dst}.self_attn", f"{src}/self_attention/linear_0", ["q", "k", "v"])
        lin(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        if cross:
            ln(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
            lin(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
            split(f"{dst}.encoder_attn", f"{src}/attention/linear_1", ["k", "v"])
            lin(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        ln(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")
        lin(f"{dst}.fc1", f"{src}/ffn/linear_0")
        lin(f"{dst}.fc2", f"{src}/ffn/linear_1")

    e, d = "model.encoder", "model.decoder"
    lin(f"{e}.conv1", "encoder/conv1")
    lin(f"{e}.conv2", "encoder/conv2")
    sd[f"{e}.embed_positions.weight"] = g("encoder/position_encodings/encodings")
    for i in range(_num_layers(variables, "encoder")):
        block(f"{e}.layers.{i}", f"encoder/layer_{i}", cross=False)
    ln(f"{e}.layer_norm", "encoder/layer_norm")
    sd[f"{d}.embed_tokens.weight"] = g("decoder/embeddings/weight")
    sd[f"{d}.embed_positions.weight"] = g("decoder/position_encodings/encodings")
    for i in range(_num_layers(variables, "decoder")):
        block(f"{d}.layers.{i}", f"decoder/layer_{i}", cross=True)
    ln(f"{d}.layer_norm", "decoder/layer_norm")
    sd["proj_out.weight"] = g("decoder/projection/weight")  # usually an alias of the embeddings
    left = [k for k, v in variables.items() if k not in used and v.ndim > 0]
    if left:
        raise ValueError(f"unmapped CTranslate2 Whisper variables: {left[:5]} ({len(left)} in all)")
    return sd


def _scalar(model: CT2Model, name: str) -> int:
    if name not in model.variables:
        raise ValueError(f"the CTranslate2 Whisper has no {name} (is this a WhisperSpec model.bin?)")
    return int(model.variables[name])


def whisper_config_kwargs(model: CT2Model, token_ids: Dict[str, int], ct2_config: Dict) -> Dict:
    """WhisperConfig arguments read off the variable shapes, the head counts and the token ids."""
    v, a = model.variables, model.aliases
    conv1 = v["encoder/conv1/weight"]  # (D, n_mels, 3)
    embed = v[a.get("decoder/embeddings/weight", "decoder/embeddings/weight")]  # (V, D)
    tied = a.get("decoder/projection/weight") == "decoder/embeddings/weight"
    return dict(
        vocab_size=embed.shape[0], num_mel_bins=conv1.shape[1], d_model=conv1.shape[0],
        encoder_layers=_num_layers(v, "encoder"), decoder_layers=_num_layers(v, "decoder"),
        encoder_attention_heads=_scalar(model, "encoder/num_heads"),
        decoder_attention_heads=_scalar(model, "decoder/num_heads"),
        encoder_ffn_dim=v["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        decoder_ffn_dim=v["decoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=v["encoder/position_encodings/encodings"].shape[0],
        max_target_positions=v["decoder/position_encodings/encodings"].shape[0],
        tie_word_embeddings=tied,
        pad_token_id=token_ids["<|endoftext|>"], bos_token_id=token_ids["<|endoftext|>"],
        eos_token_id=token_ids["<|endoftext|>"], decoder_start_token_id=token_ids["<|startoftranscript|>"],
        suppress_tokens=list(ct2_config.get("suppress_ids", [])),
        begin_suppress_tokens=list(ct2_config.get("suppress_ids_begin", [])),
    )


_REQUIRED_TOKENS = ("<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>")
_N_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>


def build_tokenizer(tokenizer_json: Path, vocab_size: int):
    """WhisperTokenizer from the shipped tokenizer.json; adds the 1501 timestamp tokens
    when the model's vocabulary has room for exactly those (the file stops at <|notimestamps|>)."""
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizer

    backend = Tokenizer.from_file(str(tokenizer_json))
    missing = [t for t in _REQUIRED_TOKENS if backend.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{tokenizer_json} lacks the Whisper special tokens {missing}")
    backend.post_processor = None  # transformers' Whisper tokenizer adds its own prefix tokens
    gap = vocab_size - backend.get_vocab_size(with_added_tokens=True)
    if gap == _N_TIMESTAMPS:
        backend.add_tokens([AddedToken("<|%.2f|>" % (i * 0.02), normalized=False) for i in range(_N_TIMESTAMPS)])
    elif gap < 0:
        raise ValueError(f"{tokenizer_json} has more tokens than the model's vocabulary ({vocab_size})")
    specials = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]
    return WhisperTokenizer(
        tokenizer_object=backend, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
        unk_token="<|endoftext|>", pad_token="<|endoftext|>", additional_special_tokens=specials,
    )


def whisper_generation_config(token_ids: Dict[str, int], ct2_config: Dict, model_cfg):
    """GenerationConfig with what ``generate(language=..., task=...)`` needs."""
    from transformers import GenerationConfig

    id_to_token = {i: t for t, i in token_ids.items()}
    lang_ids = list(ct2_config.get("lang_ids", []))
    unknown = [i for i in lang_ids if i not in id_to_token]
    if unknown:
        raise ValueError(f"config.json lang_ids {unknown[:5]} are not in the tokenizer")
    multilingual = bool(lang_ids)
    optional = {k: token_ids[t] for k, t in (("prev_sot_token_id", "<|startofprev|>"),) if t in token_ids}
    return GenerationConfig(
        decoder_start_token_id=token_ids["<|startoftranscript|>"], eos_token_id=token_ids["<|endoftext|>"],
        pad_token_id=token_ids["<|endoftext|>"], bos_token_id=token_ids["<|endoftext|>"],
        no_timestamps_token_id=token_ids["<|notimestamps|>"], is_multilingual=multilingual,
        lang_to_id={id_to_token[i]: i for i in lang_ids},
        task_to_id={t: token_ids[f"<|{t}|>"] for t in ("transcribe", "translate")} if multilingual else {},
        suppress_tokens=model_cfg.suppress_tokens, begin_suppress_tokens=model_cfg.begin_suppress_tokens,
        alignment_heads=ct2_config.get("alignment_heads"), max_initial_timestamp_index=50,
        max_length=model_cfg.max_target_positions, return_timestamps=False, **optional,
    )


def convert_ct2_whisper(ct2_dir, out_dir, dtype: str = "float32", model_bin=None) -> str:
    """Convert a faster-whisper dir (``model.bin``, ``config.json``, ``tokenizer.json``) into a
    transformers checkpoint in ``out_dir``: model (safetensors, ``dtype``), WhisperProcessor
    (feature extractor + tokenizer) and generation_config.json. Written to ``<out_dir>.tmp``
    and renamed at the end, so ``out_dir`` is either complete or absent. Returns ``out_dir``.

    ``model_bin`` overrides ``<ct2_dir>/model.bin`` (e.g. a file assembled from parts).
    """
    import torch
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperProcessor

    if dtype not in _SAVE_DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; choose from {_SAVE_DTYPES}")
    ct2_dir, out_dir = Path(ct2_dir), Path(out_dir)
    model_bin = Path(model_bin) if model_bin else ct2_dir / "model.bin"
    for f in (model_bin, ct2_dir / "config.json", ct2_dir / "tokenizer.json"):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing: a faster-whisper dir needs model.bin, config.json, tokenizer.json")
    ct2 = read_ct2_model_bin(model_bin)
    if ct2.spec != _SPEC:
        raise ValueError(f"{model_bin} holds a {ct2.spec!r}, not a {_SPEC}")
    ct2_config = json.loads((ct2_dir / "config.json").read_text())

    vocab_size = ct2.variables[ct2.aliases.get("decoder/embeddings/weight", "decoder/embeddings/weight")].shape[0]
    tokenizer = build_tokenizer(ct2_dir / "tokenizer.json", vocab_size)
    token_ids = tokenizer.get_vocab()
    cfg = WhisperConfig(**whisper_config_kwargs(ct2, token_ids, ct2_config))
    with torch.device("meta"):  # no random init of weights that are overwritten next
        model = WhisperForConditionalGeneration(cfg)
    state = {k: torch.from_numpy(v) for k, v in ct2_to_hf_state_dict(ct2).items()}
    if cfg.tie_word_embeddings:
        state.pop("proj_out.weight")
    expected = set(model.state_dict()) - ({"proj_out.weight"} if cfg.tie_word_embeddings else set())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"{model_bin}: conversion mismatch, missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    model.to(getattr(torch, dtype)).eval()
    model.generation_config = whisper_generation_config(token_ids, ct2_config, cfg)

    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    WhisperProcessor(WhisperFeatureExtractor(feature_size=cfg.num_mel_bins), tokenizer).save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    logging.info(
        f"{model_bin} -> {out_dir}: Whisper d_model {cfg.d_model}, {cfg.encoder_layers}+{cfg.decoder_layers} layers, "
        f"vocab {cfg.vocab_size}, {'multilingual' if model.generation_config.is_multilingual else 'English-only'}, {dtype}"
    )
    return str(out_dir)

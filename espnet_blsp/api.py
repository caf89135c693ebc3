"""Talk to a trained model: one loading function and a small chat API on top of stage 5's code.

Usage::

    import espnet_blsp
    model = espnet_blsp.load("egs2/blsp/exp/train_blsp")        # or a bin/export directory
    model.respond("clip.wav", "Please repeat the following words.")
    model.respond((samples, 44100))                              # any rate, any channel count
    model.respond(["a.wav", "b.wav"], "Please repeat the following words.")   # batched
    for piece in model.respond("clip.wav", stream=True): print(piece, end="", flush=True)
    model.chat([{"role": "user", "audio": "clip.wav", "text": "Please repeat the following words."},
                {"role": "assistant", "text": "the sun is warm"},
                {"role": "user", "text": "How many words was that?"}])

``load`` reads ``config.yaml``, builds the model as stage 5 does
(``blsp_inference.model_from_config``: the frozen Whisper encoder and LLM from their recorded
paths, or from ``speech_encoder=`` / ``llm=``), and loads the trainable weights: stage 5's
checkpoint choice (``find_checkpoint``) in an exp dir, ``model.safetensors`` in an export
(``espnet_blsp.bin.export``). The chat CLI (``bin/chat``) and the web demo (``bin/demo``) use it.

Audio: a path (any format ``espnet_blsp.utils.audio.load_wav`` reads) or a ``(samples, rate)``
pair, samples shaped (S,), (S, C) or (C, S) (C <= 8 < S), float in [-1, 1] or integer PCM.
As everywhere in the project, multi-channel audio gives its first channel (stage 1's rule), and
other rates are resampled to 16 kHz with ``utils.audio.resample`` (torchaudio). The clip then
takes stage 2's path: Whisper log-mel (and, for a model trained on dumped encoder outputs,
``precomputed_encoder``, the frozen encoder run on that clip alone), then stage 5's
``BLSPModel.encode`` and decoder (``llm/decoding.py``, greedy or beam, KV cache).

Turns (``chat``): ``{"role": "user", "text": str}`` (a text turn), ``{"role": "user", "audio":
clip, "text": instruction}`` (a speech turn; the instruction goes before the speech, as in
training, and may be empty), ``{"role": "assistant", "text": reply}``, and an optional first
``{"role": "system", "text": str}``. The prompt comes from ``PromptTemplate.conversation_ids``:
the LLM's chat template where ``llm_conf.prompt_template`` is ``chat``, the BLSP template
otherwise. One speech turn gives exactly stage 5's prompt.
"""

import json
import logging
import os
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from espnet_blsp.utils.audio import AudioError

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0  # Whisper's window
DEFAULT_INSTRUCTION = "Please repeat the following words."
EXPORT_META = "export.json"  # marks a directory written by espnet_blsp.bin.export
EXPORT_WEIGHTS = "model.safetensors"
EXPORT_FORMAT = "espnet_blsp-export"

Audio = Union[str, os.PathLike, Tuple[np.ndarray, int]]


# ---------------------------------------------------------------------------- audio
def load_audio(audio: Audio, name: Optional[str] = None) -> np.ndarray:
    """A path or a ``(samples, rate)`` pair -> float32 mono samples at 16 kHz, shape (S,).

    Raises AudioError naming the clip for a missing, undecodable, empty, too short
    (< 0.15 s, less than one adapter frame) or too long (> 30 s) clip.
    """
    from espnet_blsp.bin.dump_feats import min_frames_for_adapter
    from espnet_blsp.encoders.features import HOP_LENGTH
    from espnet_blsp.utils.audio import load_wav, resample

    if isinstance(audio, (str, os.PathLike)):
        path = os.path.expanduser(str(audio))
        name = name or path
        if not os.path.isfile(path):  # a path only, never a wav.scp pipe command
            raise AudioError(f"{name}: audio file not found")
        try:
            wav = load_wav(path, SAMPLE_RATE, utt_id=name)
        except AudioError as e:  # its messages start "utterance <name>: "; a clip has no utterance id
            raise AudioError(str(e).replace(f"utterance {name}: ", f"{name}: ", 1)) from None
    elif isinstance(audio, (tuple, list)) and len(audio) == 2 and np.ndim(audio[1]) == 0:
        samples, rate = audio
        name = name or "audio array"
        wav = np.asarray(samples)
        if wav.ndim == 2:  # (S, C), or (C, S) when the first axis is the short one
            wav = wav[0] if wav.shape[0] <= 8 < wav.shape[1] else wav[:, 0]
        if wav.ndim != 1:
            raise AudioError(f"{name}: expected samples shaped (S,), (S, C) or (C, S), got {np.shape(samples)}")
        if np.issubdtype(wav.dtype, np.integer):
            wav = wav.astype(np.float32) / float(np.iinfo(wav.dtype).max + 1)
        elif not np.issubdtype(wav.dtype, np.floating):
            raise AudioError(f"{name}: samples of dtype {wav.dtype} are not audio")
        if not (isinstance(rate, (int, np.integer)) and rate > 0):
            raise AudioError(f"{name}: the sampling rate must be a positive integer, got {rate!r}")
        wav = np.ascontiguousarray(wav, dtype=np.float32)
        if not np.isfinite(wav).all():
            raise AudioError(f"{name}: audio holds NaN/inf samples")
        wav = np.ascontiguousarray(resample(wav, int(rate), SAMPLE_RATE), dtype=np.float32)
    else:
        raise TypeError(f"audio must be a path or a (samples, rate) pair, got {type(audio).__name__}")
    seconds = len(wav) / SAMPLE_RATE
    if seconds > MAX_SECONDS:
        raise AudioError(f"{name}: {seconds:.1f} s long; Whisper encodes at most {MAX_SECONDS:.0f} s: cut it")
    min_samples = min_frames_for_adapter() * HOP_LENGTH
    if len(wav) < min_samples:
        raise AudioError(f"{name}: {seconds:.2f} s is too short (at least {min_samples / SAMPLE_RATE:.2f} s)")
    return wav


# ---------------------------------------------------------------------------- loading
def _resolve(name: str, bases: Sequence[Path]) -> Optional[str]:
    """``name`` as given if it exists, else relative to each of ``bases``; None if none does."""
    p = Path(os.path.expanduser(name))
    if p.exists():
        return str(p)
    if not p.is_absolute():
        for base in bases:
            if (base / p).exists():
                return str(base / p)
    return None


def _in_hf_cache(name: str) -> bool:
    """An ``org/name`` hub id whose config.json is in the local HF cache (nothing is downloaded)."""
    if name.count("/") != 1 or name.startswith(("/", ".", "~")):
        return False
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:  # noqa: BLE001 - not a valid repo id, no cache: not found
        return False


def _base_model_path(kind: str, override, recorded: str, config_path: Path, bases: Sequence[Path],
                     option: str) -> str:
    """The checkpoint dir of a frozen base model: ``override``, else the recorded path (as given,
    or relative to the recipe dir of ``exp/<tag>``), or a hub id in the local HF cache. Raises one
    clear error naming what is expected when it is nowhere."""
    name = str(override) if override is not None else recorded
    found = _resolve(name, [] if override is not None else bases)
    if found is not None:
        return found
    if _in_hf_cache(name):
        return name  # a hub id in the local HF cache, where the loaders look it up
    tried = [name] + ([str(b / name) for b in bases] if override is None and not Path(name).is_absolute() else [])
    where = f"given as {option}" if override is not None else f"recorded in {config_path}"
    raise FileNotFoundError(
        f"the {kind} checkpoint {name} ({where}) is not found (tried {', '.join(tried)}; "
        "nor in the local HF cache); "
        f"it must be the {kind} directory this model was trained with: pass {option}=<dir>"
    )


def _config_signature(model_dir: str) -> Dict:
    """Fields of a HF ``config.json`` that tell one base model from another."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        return {}
    cfg = json.loads(path.read_text(encoding="utf-8"))
    keys = ("model_type", "architectures", "hidden_size", "d_model", "vocab_size", "num_hidden_layers",
            "encoder_layers", "num_mel_bins", "num_attention_heads", "intermediate_size")
    return {k: cfg[k] for k in keys if k in cfg}


def weight_fingerprint(model) -> Dict[str, float]:
    """Sums of |w| over a few frozen tensors of the base models: they tell two checkpoints of
    the same architecture apart (e.g. a base LLM and its instruct version)."""
    llm = model.llm.model
    enc = model.encoder.encoder
    parts = {
        "llm.input_embeddings[:64]": llm.get_input_embeddings().weight[:64],
        "llm.output_embeddings[-64:]": llm.get_output_embeddings().weight[-64:],
        "speech_encoder.conv1": enc.conv1.weight,
        "speech_encoder.layer_norm": enc.layer_norm.weight,
    }
    return {k: float(v.detach().double().abs().sum()) for k, v in parts.items()}


def _check_fingerprint(found: Dict[str, float], recorded: Dict[str, float], paths: Dict[str, str],
                       export_dir: Path) -> None:
    for key, want in recorded.items():
        have = found.get(key)
        if have is None or abs(have - want) > 1e-2 * max(abs(want), 1e-6):
            which = "llm" if key.startswith("llm") else "speech_encoder"
            role = {"llm": "LLM", "speech_encoder": "speech encoder"}[which]
            raise ValueError(
                f"{paths[which]} is not the {role} the export {export_dir} was made with: "
                f"its weights differ ({key}: {have} here, {want} recorded in {export_dir / EXPORT_META}); "
                f"pass {which}=<the directory of the model it was trained with>"
            )


def load(
    path,
    device: str = "auto",
    checkpoint: Optional[str] = None,
    speech_encoder: Optional[str] = None,
    llm: Optional[str] = None,
    dtype: Optional[str] = None,
) -> "SpeechChat":
    """A ready model from an exp dir (``exp/<tag>`` after stage 4) or an export dir.

    Args:
        path: ``exp/<tag>`` (``config.yaml`` + ESPnet checkpoints) or a directory written by
            ``python -m espnet_blsp.bin.export``.
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda:0``, ...
        checkpoint: a file name inside an exp dir (default: stage 5's choice, the best epoch).
        speech_encoder, llm: base-model directories instead of the recorded ones.
        dtype: the LLM dtype instead of ``llm_conf.dtype`` (auto | float32 | bfloat16 | float16; auto: bfloat16 where the device runs it natively).
    """
    import yaml

    from espnet_blsp.bin.blsp_inference import find_checkpoint, load_trainable_state, model_from_config

    path = Path(os.path.expanduser(str(path)))
    expected = ("expected an experiment dir (exp/<tag> with config.yaml and a checkpoint, written by "
                "run.sh stage 4) or a directory written by python -m espnet_blsp.bin.export")
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such directory; {expected}")
    config_path = path / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} holds no config.yaml; {expected}")
    with open(config_path, encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    missing = [k for k in ("speech_encoder_conf", "speech_adapter", "speech_adapter_conf", "llm_conf", "model_conf")
               if not isinstance(cfg, dict) or k not in cfg]
    if missing:
        raise ValueError(f"{config_path} is not a BLSP training config (no {', '.join(missing)}); {expected}")

    meta = None
    if (path / EXPORT_META).is_file():
        meta = json.loads((path / EXPORT_META).read_text(encoding="utf-8"))
        if meta.get("format") != EXPORT_FORMAT:
            raise ValueError(f"{path / EXPORT_META} is not an espnet_blsp export record")
        weights = path / EXPORT_WEIGHTS
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} not found: the export {path} is incomplete; export it again")
        if checkpoint is not None:
            raise ValueError(f"{path} is an export with one set of weights; checkpoint= applies to exp dirs only")
    else:
        try:
            weights = find_checkpoint(path, checkpoint)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; {expected}") from None

    # 1. the frozen base models: given, recorded (relative to the recipe dir of exp/<tag>), or
    # recorded at export time
    bases = [Path.cwd(), path.resolve().parent.parent]
    paths = {}
    for key, conf_key, kind, override, option in (
        ("speech_encoder", "speech_encoder_conf", "speech encoder (Whisper)", speech_encoder, "speech_encoder"),
        ("llm", "llm_conf", "LLM", llm, "llm"),
    ):
        recorded = cfg[conf_key].get("model_name_or_path")
        if not recorded:
            raise ValueError(f"{config_path}: {conf_key}.model_name_or_path is empty")
        if override is None and meta is not None:
            exported = meta["base_models"][key]
            found = _resolve(exported["resolved_path"], []) or _resolve(recorded, [Path.cwd(), path])
            if found is None and not _in_hf_cache(recorded):
                raise FileNotFoundError(
                    f"the {kind} checkpoint this export was made with is not found: {exported['resolved_path']} "
                    f"(recorded in {path / EXPORT_META}; config.yaml names {recorded}); "
                    f"pass {option}=<dir> pointing at a copy of it"
                )
            paths[key] = found or recorded
        else:
            paths[key] = _base_model_path(kind, override, recorded, config_path, bases, option)
        if meta is not None:
            want, have = meta["base_models"][key]["config"], _config_signature(paths[key])
            diff = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
            if diff:
                raise ValueError(
                    f"{paths[key]} is not the {kind} the export {path} was made with "
                    f"({meta['base_models'][key]['name_or_path']}): its config.json differs in "
                    + ", ".join(f"{k} ({h} here, {w} expected)" for k, (h, w) in diff.items())
                    + f"; pass {option}=<the directory of the model it was trained with>"
                )

    # 2. the model as stage 5 builds it, 3. its trainable weights
    from espnet_blsp.utils.dtype import resolve_device, resolve_dtype_name

    dev = resolve_device(device)

    # auto (the mini configs) is resolved for the device the model will run on
    want = resolve_dtype_name(dtype or cfg["llm_conf"].get("dtype", "auto"), dev)
    cfg = dict(cfg, llm_conf=dict(cfg["llm_conf"], dtype=want))
    model = model_from_config(cfg, speech_encoder=paths["speech_encoder"], llm=paths["llm"])
    if meta is not None:
        from safetensors.torch import load_file

        _check_fingerprint(weight_fingerprint(model), meta.get("fingerprint", {}), paths, path)
        state = load_file(str(weights))
    else:
        state = load_trainable_state(weights)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{weights} does not fit the model of {config_path}: {e}") from None
    logging.info(f"loaded {weights} (speech encoder {paths['speech_encoder']}, LLM {paths['llm']})")
    return SpeechChat(model.to(dev).eval(), source=path, weights=weights, config=cfg, base_models=paths)


# ---------------------------------------------------------------------------- the model
class SpeechChat:
    """A loaded BLSP model with ``respond`` (one speech turn, batched) and ``chat`` (multi-turn).

    Attributes:
        model: the ``BLSPModel`` (eval mode). source: the exp or export dir. weights: the file
        the trainable weights came from. config: its ``config.yaml``. base_models: the resolved
        ``speech_encoder`` and ``llm`` directories.
    Decoding options (each call may override them): ``max_new_tokens`` (128, as conf/decode.yaml),
    ``num_beams`` (1: greedy), ``repetition_penalty`` (1.0).
    """

    def __init__(self, model, source: Path, weights: Path, config: dict, base_models: Dict[str, str]):
        from espnet_blsp.encoders.features import WhisperLogMel

        self.model = model
        self.source, self.weights, self.config, self.base_models = source, weights, config, base_models
        self.llm = model.llm
        self.template = model.llm.template
        self.frontend = WhisperLogMel(n_mels=model.encoder.n_mels)
        self.decode_conf = dict(max_new_tokens=128, num_beams=1, repetition_penalty=1.0)

    @property
    def device(self) -> torch.device:
        return self.llm.device

    # ------------------------------------------------------------------ speech
    @torch.no_grad()
    def speech_embeddings(self, clips: List[np.ndarray], names: Optional[List[str]] = None) -> List[torch.Tensor]:
        """16 kHz mono clips -> adapter outputs (N_i, H) in the LLM dtype, as stage 5 computes them."""
        feats = [torch.from_numpy(self.frontend(w)) for w in clips]  # (T_i, n_mels)
        if self.model.precomputed_encoder:  # trained on stage 2's per-clip encoder outputs
            enc = self.model.encoder
            dtype = next(enc.parameters()).dtype
            outs = []
            for f in feats:
                h, h_lens = enc(f[None].to(self.device, dtype), torch.tensor([f.shape[0]], device=self.device))
                outs.append(h[0, : int(h_lens[0])].float().cpu())  # (T_i', D_enc), float32 as in the dump
            feats = outs
        lens = torch.tensor([f.shape[0] for f in feats], device=self.device)
        speech = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True).to(self.device)
        y, y_lens, _ = self.model.encode(speech, lens, utt_id=names)
        return [y[b, : int(n)].to(self.llm.dtype) for b, n in enumerate(y_lens.tolist())]

    # ------------------------------------------------------------------ prompts
    @staticmethod
    def _messages(turns: List[Dict]) -> Tuple[List[Dict[str, str]], List[Tuple[int, Audio]]]:
        """Turns -> template messages (speech as ``PLACEHOLDER``) and the (turn, audio) of each clip."""
        from espnet_blsp.llm.prompt import PLACEHOLDER

        messages, audio = [], []
        for i, t in enumerate(turns):
            if not isinstance(t, dict) or t.get("role") not in ("system", "user", "assistant"):
                raise ValueError(f"turn {i}: expected a dict with role system|user|assistant, got {t!r}")
            text = t.get("text") or ""
            if not isinstance(text, str):
                raise ValueError(f"turn {i}: text must be a string, got {type(text).__name__}")
            if PLACEHOLDER in text:
                raise ValueError(f"turn {i}: the text holds the reserved marker {PLACEHOLDER}")
            if t.get("audio") is not None:
                if t["role"] != "user":
                    raise ValueError(f"turn {i}: only a user turn can hold audio")
                audio.append((i, t["audio"]))
                text = text + PLACEHOLDER
            elif t["role"] == "user" and not text.strip():
                raise ValueError(f"turn {i}: a user turn needs text or audio")
            messages.append({"role": t["role"], "content": text})
        return messages, audio

    def prompt_pieces(self, turns: List[Dict]) -> List[List[int]]:
        """The token ids between the speech clips of a conversation (``conversation_ids``)."""
        return self.template.conversation_ids(self._messages(turns)[0])

    def build_batch(self, conversations: List[List[Dict]]):
        """Conversations -> the decoder's ``PromptBatch``: per sample, the ids of the first piece
        (prefix), the clips with the ids between them embedded (middle; Partial LoRA on the clips
        only) and the ids after the last clip (suffix)."""
        pieces, clips, names = [], [], []
        for c, turns in enumerate(conversations):
            messages, audio = self._messages(turns)
            pieces.append(self.template.conversation_ids(messages))
            for i, a in audio:
                name = str(a) if isinstance(a, (str, os.PathLike)) else f"conversation {c}, turn {i}"
                clips.append(load_audio(a, name))
                names.append(name)
        embs = iter(self.speech_embeddings(clips, names) if clips else [])
        dev, H = self.device, self.llm.hidden_size
        prefix, middle, suffix, spans = [], [], [], []
        for ids in pieces:
            rows, span, n = [], [], 0
            if len(ids) == 1:  # text only: everything is prefix
                prefix.append(torch.tensor(ids[0], dtype=torch.long, device=dev))
                middle.append(torch.zeros(0, H, dtype=self.llm.dtype, device=dev))
                suffix.append(torch.zeros(0, dtype=torch.long, device=dev))
                spans.append([])
                continue
            for k in range(1, len(ids)):
                clip = next(embs)  # (N, H)
                span.append((n, n + clip.shape[0]))
                rows.append(clip)
                n += clip.shape[0]
                if k < len(ids) - 1 and ids[k]:  # text between two clips
                    t = self.llm.embed(torch.tensor(ids[k], device=dev))
                    rows.append(t)
                    n += t.shape[0]
            prefix.append(torch.tensor(ids[0], dtype=torch.long, device=dev))
            middle.append(torch.cat(rows))
            suffix.append(torch.tensor(ids[-1], dtype=torch.long, device=dev))
            spans.append(span)
        batch = self.llm.build_inputs(prefix, middle, suffix, None, speech_spans=spans)
        limit = self.model.max_context
        if limit is not None and int(batch.lengths.max()) > limit:
            raise ValueError(f"the prompt is {int(batch.lengths.max())} positions long, over the LLM's context "
                             f"of {limit}: start a new conversation")
        return batch

    # ------------------------------------------------------------------ decoding
    def _options(self, overrides: Dict) -> Dict:
        unknown = set(overrides) - set(self.decode_conf)
        if unknown:
            raise TypeError(f"unknown decoding options {sorted(unknown)}; choose from {sorted(self.decode_conf)}")
        return dict(self.decode_conf, **{k: v for k, v in overrides.items() if v is not None})

    def _decode(self, conversations: List[List[Dict]], opts: Dict) -> List[str]:
        from espnet_blsp.llm.decoding import decode

        hyps = decode(self.llm, self.build_batch(conversations), **opts)
        return [self.llm.tokenizer.decode(h, skip_special_tokens=True) for h in hyps]

    def _stream(self, turns: List[Dict], opts: Dict) -> Iterator[str]:
        """Text pieces of one reply as the greedy decoder emits its tokens. A piece is held
        back while the text ends in whitespace or in an incomplete character, so the pieces
        join to the text ``chat`` returns."""
        from espnet_blsp.llm.decoding import greedy_steps

        if opts["num_beams"] != 1:
            raise ValueError("streaming needs greedy decoding (num_beams=1)")
        batch = self.build_batch([turns])
        ids: List[int] = []
        shown = ""
        for step in greedy_steps(self.llm, batch, opts["max_new_tokens"], opts["repetition_penalty"]):
            ids += [tok for _, tok in step]
            text = self.llm.tokenizer.decode(ids, skip_special_tokens=True)
            stable = text.rstrip()
            if stable.endswith("\ufffd") or not stable.startswith(shown) or len(stable) == len(shown):
                continue
            yield stable[len(shown):]
            shown = stable
        text = self.llm.tokenizer.decode(ids, skip_special_tokens=True)
        if text.startswith(shown) and len(text) > len(shown):
            yield text[len(shown):]
        elif not text.startswith(shown):
            logging.warning("streamed text and the final decode differ (the tokenizer cleaned up spaces)")

    def chat(self, turns: List[Dict], stream: bool = False, **decode_opts) -> Union[str, Iterator[str]]:
        """The assistant's reply to a conversation (see the module docstring for the turns);
        with ``stream``, an iterator of text pieces of it."""
        opts = self._options(decode_opts)
        if stream:
            return self._stream(list(turns), opts)
        return self._decode([list(turns)], opts)[0]

    def respond(
        self,
        audio: Union[Audio, List[Audio]],
        instruction: Union[str, List[str]] = DEFAULT_INSTRUCTION,
        stream: bool = False,
        batch_size: int = 8,
        **decode_opts,
    ) -> Union[str, List[str], Iterator[str]]:
        """The reply to one speech turn: ``instruction`` + the clip (stage 5's prompt).

        ``audio`` is one clip (a path or a ``(samples, rate)`` pair) -> str, or a list of clips
        -> list of str, decoded ``batch_size`` at a time (equal to one by one); ``instruction``
        is one text or one per clip. ``stream`` (one clip) -> an iterator of text pieces.
        """
        opts = self._options(decode_opts)
        single = not isinstance(audio, list)
        clips = [audio] if single else audio
        instructions = [instruction] * len(clips) if isinstance(instruction, str) else list(instruction)
        if len(instructions) != len(clips):
            raise ValueError(f"{len(clips)} clips but {len(instructions)} instructions")
        conversations = [[{"role": "user", "audio": a, "text": t}] for a, t in zip(clips, instructions)]
        if stream:
            if not single:
                raise ValueError("stream=True takes one clip")
            return self._stream(conversations[0], opts)
        out: List[str] = []
        for i in range(0, len(conversations), batch_size):
            out += self._decode(conversations[i : i + batch_size], opts)
        return out[0] if single else out

    def describe(self) -> str:
        """One line: where the weights and the base models come from."""
        return (f"{self.source} ({self.weights.name}; speech encoder {self.base_models['speech_encoder']}, "
                f"LLM {self.base_models['llm']}, prompt template {self.template.kind})")

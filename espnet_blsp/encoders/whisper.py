"""The encoder of any HF Whisper checkpoint, run on each clip's true length.

Usage::

    enc = WhisperSpeechEncoder("/path/to/whisper-large-v2")        # frozen, eval mode
    hs, hs_lens = enc(feats, feats_lens)   # (B, T, n_mels) -> (B, ceil(T/2), D)
"""

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch
from torch import nn

_ENCODER_PREFIXES = ("model.encoder.", "encoder.")  # WhisperForConditionalGeneration, WhisperModel


def _read_encoder_state(path: Path) -> Dict[str, torch.Tensor]:
    """Encoder tensors of a local checkpoint (safetensors, sharded or not, or pytorch_model.bin),
    with the ``model.encoder.`` / ``encoder.`` prefix removed. Other tensors are never read."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        files = sorted({path / f for f in json.loads(index.read_text())["weight_map"].values()})
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    elif (path / "pytorch_model.bin").is_file():
        state = torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
        return {k[len(p):]: v for k, v in state.items() for p in _ENCODER_PREFIXES if k.startswith(p)}
    else:
        raise FileNotFoundError(f"no model.safetensors(.index.json) or pytorch_model.bin in {path}")
    state = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                for prefix in _ENCODER_PREFIXES:
                    if key.startswith(prefix):
                        state[key[len(prefix):]] = f.get_tensor(key)
    return state


def _load_encoder(name: str):
    """WhisperEncoder with the weights of a local checkpoint dir or a hub id in the local HF cache."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    from espnet_blsp.utils.model_paths import locate_model_dir

    path = locate_model_dir(name, "speech encoder")  # a local dir, or a hub id's cached snapshot
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"no config.json in the speech encoder checkpoint {path}")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type != "whisper":
        raise ValueError(f"{config_file} describes a {model_type!r} model, not a Whisper checkpoint")
    with torch.device("meta"):  # no random init of weights that are loaded next
        encoder = WhisperEncoder(WhisperConfig.from_pretrained(str(path)))
    state = _read_encoder_state(path)
    expected = set(encoder.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not hold a Whisper encoder matching its config: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    # float32 whatever the file holds (fp16 for some checkpoints); callers cast for inference
    encoder.load_state_dict({k: v.float() for k, v in state.items()}, assign=True)
    return encoder


class WhisperSpeechEncoder(nn.Module):
    """Whisper encoder without the 30 s padding.

    ``WhisperEncoder.forward`` insists on 3000 frames. This module runs the same
    submodules itself: the conv front end, the first T' rows of the positional
    embedding, the layers with a key-padding mask, and the final LayerNorm, so the cost
    follows the true length and an utterance's output in a batch equals its output
    alone (padded mel frames and padded conv outputs are zeroed, padded keys masked).

    Shapes::

        feats: (B, T, n_mels), feats_lens: (B,)  ->  hs: (B, T', D), hs_lens: (B,)
        T' = ceil(T / 2) (conv2 has stride 2); hs_lens = ceil(feats_lens / 2)

    Legend: B batch, T mel frames (100 per second), T' encoder frames (50 per second),
    D encoder width (``output_size()``).

    Args:
        model_name_or_path: a local checkpoint dir (WhisperModel or
            WhisperForConditionalGeneration; only the encoder tensors are read) or an
            HF hub id already in the local HF cache (nothing is downloaded).
        config: WhisperConfig keyword arguments for a randomly initialised encoder
            (tests, benchmarks). Give exactly one of the two.
        freeze: no parameter requires grad and the module stays in eval mode even
            under ``.train()``. ``freeze=False`` fine-tunes it (BLSP-KD variants 6, 7);
            the sinusoidal positions stay fixed, as in HF Whisper.
        max_frames: longest accepted input in mel frames (3000 = 30 s).
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        config: Optional[dict] = None,
        freeze: bool = True,
        max_frames: int = 3000,
    ):
        super().__init__()
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if (model_name_or_path is None) == (config is None):
            raise ValueError("give exactly one of model_name_or_path and config")
        if model_name_or_path is not None:
            self.encoder = _load_encoder(str(model_name_or_path))
        else:
            self.encoder = WhisperEncoder(WhisperConfig(**config))
        cfg = self.encoder.config
        self.n_mels = cfg.num_mel_bins
        self.num_heads = cfg.encoder_attention_heads
        self.ffn_dim = cfg.encoder_ffn_dim
        self.num_layers = cfg.encoder_layers
        self.max_frames = max_frames
        positions = self.encoder.embed_positions.num_embeddings
        if (max_frames + 1) // 2 > positions:
            raise ValueError(
                f"max_frames {max_frames} needs {(max_frames + 1) // 2} positions; the encoder has {positions}"
            )
        self.frozen = freeze
        if freeze:
            self.requires_grad_(False)
            self.eval()

    def output_size(self) -> int:
        return self.encoder.config.d_model

    def train(self, mode: bool = True):
        """A frozen encoder stays in eval mode (no dropout), whatever the trainer asks."""
        return super().train(mode and not self.frozen)

    def forward(self, feats: torch.Tensor, feats_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder
        if feats.dim() != 3 or feats.shape[2] != self.n_mels or feats_lens.shape != feats.shape[:1]:
            raise ValueError(
                f"expected feats (B, T, {self.n_mels}) and feats_lens (B,); "
                f"got {tuple(feats.shape)}, {tuple(feats_lens.shape)}"
            )
        B, T = feats.shape[:2]
        feats_lens = feats_lens.to(feats.device)
        longest, shortest = int(feats_lens.max()), int(feats_lens.min())
        if longest > self.max_frames:
            raise ValueError(f"input of {longest} frames exceeds 30 s ({self.max_frames} frames)")
        if shortest < 1 or longest > T:
            raise ValueError(f"feats_lens {feats_lens.tolist()} must lie in [1, T={T}]")

        frame_ok = torch.arange(T, device=feats.device)[None] < feats_lens[:, None]  # (B, T)
        x = feats.masked_fill(~frame_ok[:, :, None], 0.0).transpose(1, 2)  # (B, n_mels, T)
        x = nn.functional.gelu(enc.conv1(x))  # (B, D, T)
        x = x * frame_ok[:, None, :].to(x.dtype)  # conv2 must see zeros past the end, as alone
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # (B, D, T) -> (B, ceil(T/2), D)
        hs_lens = torch.div(feats_lens + 1, 2, rounding_mode="floor")  # ceil(T / 2)
        T2 = x.shape[1]
        valid = torch.arange(T2, device=x.device)[None] < hs_lens[:, None]  # (B, T')
        x = x.masked_fill(~valid[:, :, None], 0.0) + enc.embed_positions.weight[:T2].to(x.dtype)
        x = nn.functional.dropout(x, p=enc.dropout, training=self.training)

        # additive key-padding mask (B, 1, 1, T'), broadcast over heads and queries; None
        # when nothing is padded, which lets SDPA pick its fastest kernel
        mask = None
        if shortest < T:
            mask = torch.zeros(B, 1, 1, T2, dtype=x.dtype, device=x.device)
            mask = mask.masked_fill(~valid[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in enc.layers:
            if self.training and enc.layerdrop > 0 and torch.rand([]) < enc.layerdrop:
                continue  # LayerDrop, as WhisperEncoder.forward does in training
            x = layer(x, mask)  # (B, T', D)
        x = enc.layer_norm(x).masked_fill(~valid[:, :, None], 0.0)  # (B, T', D)
        return x, hs_lens

"""The encoder of any HF Whisper checkpoint, run on each clip's true length."""

import os
from typing import Optional, Tuple

import torch
from torch import nn


class WhisperSpeechEncoder(nn.Module):
    """Whisper encoder without the 30 s padding.

    ``WhisperEncoder.forward`` insists on 3000 frames; this module runs its conv front
    end, the first T' positional embeddings and its layers with a key-padding mask, so
    cost follows the true length and each utterance's output in a batch equals its
    output alone.

    Shapes::

        feats: (B, T, n_mels), feats_lens: (B,) -> hs: (B, T', D), hs_lens: (B,)
        T' = ceil(T / 2)   (conv2 has stride 2)

    Legend: B batch, T mel frames (100 per second), D encoder width.
    """

    def __init__(
        self,
        model_name_or_path: Optional[str] = None,
        config: Optional[dict] = None,
        freeze: bool = True,
        max_frames: int = 3000,
    ):
        super().__init__()
        from transformers import WhisperConfig, WhisperModel
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        if model_name_or_path is not None:
            looks_local = model_name_or_path.startswith((".", "/", "~")) or os.sep in model_name_or_path.rstrip("/").split("/", 1)[-1]
            if looks_local and not os.path.isdir(os.path.expanduser(model_name_or_path)):
                raise FileNotFoundError(f"speech encoder checkpoint not found: {model_name_or_path}")
            try:
                self.encoder = WhisperModel.from_pretrained(model_name_or_path).get_encoder()
            except OSError as e:
                raise FileNotFoundError(f"cannot load a Whisper checkpoint from {model_name_or_path}: {e}") from None
        elif config is not None:
            self.encoder = WhisperEncoder(WhisperConfig(**config))
        else:
            raise ValueError("give model_name_or_path or config")
        cfg = self.encoder.config
        self.n_mels = cfg.num_mel_bins
        self.num_heads = cfg.encoder_attention_heads
        self.ffn_dim = cfg.encoder_ffn_dim
        self.num_layers = cfg.encoder_layers
        self.max_frames = max_frames
        self.frozen = freeze
        if freeze:
            for p in self.parameters():
                p.requires_grad_(False)
            self.eval()

    def output_size(self) -> int:
        return self.encoder.config.d_model

    def train(self, mode: bool = True):
        return super().train(mode and not self.frozen)

    def forward(self, feats: torch.Tensor, feats_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if int(feats_lens.max()) > self.max_frames:
            raise ValueError(f"input exceeds 30 s ({self.max_frames} frames)")
        enc = self.encoder
        T = feats.shape[1]
        frame_mask = (torch.arange(T, device=feats.device)[None] < feats_lens[:, None])  # (B, T)
        x = (feats * frame_mask[:, :, None]).transpose(1, 2)  # (B, T, n_mels) -> (B, n_mels, T)
        x = nn.functional.gelu(enc.conv1(x)) * frame_mask[:, None, :]  # (B, D, T)
        x = nn.functional.gelu(enc.conv2(x))  # (B, D, T) -> (B, D, ceil(T/2))
        x = x.transpose(1, 2)  # (B, T', D)
        hs_lens = torch.div(feats_lens + 1, 2, rounding_mode="floor")
        Tp = x.shape[1]
        x = x + enc.embed_positions.weight[:Tp].to(x.dtype)
        valid = torch.arange(Tp, device=x.device)[None] < hs_lens[:, None]  # (B, T')
        # additive mask (B, 1, T', T'): padded keys get -inf
        attn = torch.zeros(x.shape[0], 1, Tp, Tp, dtype=x.dtype, device=x.device)
        attn = attn.masked_fill(~valid[:, None, None, :], torch.finfo(x.dtype).min)
        for layer in enc.layers:
            out = layer(x, attention_mask=attn)
            x = out[0] if isinstance(out, tuple) else out
        x = enc.layer_norm(x) * valid[:, :, None]
        return x, hs_lens

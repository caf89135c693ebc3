"""BLSP-KD's CFormer adapter: pre-CIF transformer -> CIF -> post-CIF transformer."""

from typing import Dict, Optional, Tuple

import torch
from torch import nn

from espnet_blsp.adapters.cif import cif, scale_alphas


def _pad_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """True at padded positions (the key_padding_mask convention)."""
    return torch.arange(T, device=lengths.device)[None] >= lengths[:, None]  # (B, T)


def sinusoids(length: int, channels: int, device=None) -> torch.Tensor:
    """(length, channels) sinusoidal positions, as Whisper's encoder uses."""
    half = channels // 2
    inv = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(half, device=device) / max(half - 1, 1))
    t = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv[None]
    pe = torch.cat([t.sin(), t.cos()], dim=1)
    return nn.functional.pad(pe, (0, channels - 2 * half))


class _Block(nn.Module):
    """A stack of pre-LN transformer layers (GELU), shaped like Whisper's encoder layers,
    with sinusoidal positions added at its input (attention alone is order-blind)."""

    def __init__(self, d_model: int, heads: int, ffn: int, num_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, heads, ffn, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = _pad_mask(lengths, x.shape[1])
        x = x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=pad)
        return self.norm(x).masked_fill(pad[:, :, None], 0.0)


class CFormerAdapter(nn.Module):
    """CFormer: one output vector per transcript token.

    Shapes::

        x: (B, T, D_in), x_lens: (B,), target_lens: (B,) or None
        -> y: (B, N, D_out), y_lens: (B,), aux {"alpha_sum": (B,)}

    Legend: B batch, T encoder frames, N tokens (= target_lens in training, fired by
    CIF at threshold 1.0 at inference), D_in encoder width, D model width, D_out LLM width.

    The last channel of the pre-CIF output gives alpha = sigmoid(.); the other D-1
    channels are integrated by CIF and projected back to D (the paper's M).
    ``alpha_sum`` is the unscaled sum of alphas, for the quantity loss |sum - N| / N.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        d_model: Optional[int] = None,
        attention_heads: int = 8,
        linear_units: Optional[int] = None,
        num_pre_layers: int = 4,
        num_post_layers: int = 4,
        dropout_rate: float = 0.1,
        threshold: float = 1.0,
        tail_threshold: float = 0.5,
    ):
        super().__init__()
        d = d_model or input_size
        ffn = linear_units or 4 * d
        self.input_proj = nn.Linear(input_size, d) if d != input_size else nn.Identity()
        self.pre = _Block(d, attention_heads, ffn, num_pre_layers, dropout_rate)
        self.cif_proj = nn.Linear(d - 1, d)  # M: (D-1) -> D
        self.post = _Block(d, attention_heads, ffn, num_post_layers, dropout_rate)
        self.out_proj = nn.Linear(d, output_size)
        self.threshold, self.tail_threshold = threshold, tail_threshold
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, target_lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        x = x.masked_fill(_pad_mask(x_lens, x.shape[1])[:, :, None], 0.0)
        h = self.pre(self.input_proj(x), x_lens)  # (B, T, D_in) -> (B, T, D)
        valid = ~_pad_mask(x_lens, h.shape[1])
        alpha = torch.sigmoid(h[..., -1].float()) * valid  # (B, T)
        alpha_sum = alpha.sum(1)
        if target_lens is not None:
            alpha_used = scale_alphas(alpha, x_lens, target_lens)
        else:
            alpha_used = alpha
        tokens, y_lens = cif(
            h[..., :-1].float(), alpha_used, x_lens, self.threshold, self.tail_threshold,
            target_lengths=target_lens,
        )  # (B, T, D-1) -> (B, N, D-1)
        tokens = self.cif_proj(tokens.to(h.dtype))  # (B, N, D-1) -> (B, N, D)
        y = self.out_proj(self.post(tokens, y_lens))  # (B, N, D) -> (B, N, D_out)
        y = y.masked_fill(_pad_mask(y_lens, y.shape[1])[:, :, None], 0.0)
        return y, y_lens, {"alpha_sum": alpha_sum}

"""BLSP's CNN modality adapter: strided Conv1d + GLU layers, then a residual bottleneck.

Usage::

    adapter = CNNAdapter(input_size=1280, output_size=4096)   # Whisper-large -> 7B LLM
    y, y_lens, _ = adapter(enc, enc_lens)                      # 8x shorter
"""

from typing import Dict, Optional, Tuple

import torch
from torch import nn


def _valid_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device)[None] < lengths[:, None]  # (B, T)


class CNNAdapter(nn.Module):
    """``num_layers`` x [Conv1d(k, stride s, padding k//2) -> GLU], then y + W2 GELU(W1 y), LayerNorm.

    Shapes::

        x: (B, T, D_in), x_lens: (B,)  ->  y: (B, N, D_out), y_lens: (B,), aux: {}
        per layer L -> floor((L + 2 * (k // 2) - k) / s) + 1   (k=5, s=2: ceil(L / 2))
        3 layers: N = ceil(ceil(ceil(T / 2) / 2) / 2), i.e. 8x shorter

    Legend: B batch, T encoder frames, N adapter outputs, D_in encoder width,
    D_out LLM width, D_b bottleneck width.

    Channel widths: each conv doubles its output width and GLU halves it again:
    D_in -> 2 D_in -> (GLU) D_in -> ... -> 2 D_out -> (GLU) D_out. The bottleneck is
    Linear(D_out, D_b, bias=False) -> GELU -> Linear(D_b, D_out, bias=False), added
    residually, then LayerNorm(D_out). Padded frames are zeroed before every
    convolution and at the output, so an utterance's output in a batch equals its
    output alone. ``target_lens`` is accepted for the common adapter interface and
    ignored (the CNN's output length follows the audio).
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        num_layers: int = 3,
        kernel_size: int = 5,
        stride: int = 2,
        bottleneck_dim: int = 512,
        layer_norm_eps: float = 1e-5,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.input_size = input_size
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        widths = [input_size] * num_layers + [output_size]  # GLU output widths
        self.convs = nn.ModuleList(
            nn.Conv1d(widths[i], 2 * widths[i + 1], kernel_size, stride, self.padding)
            for i in range(num_layers)
        )
        self.bottleneck_down = nn.Linear(output_size, bottleneck_dim, bias=False)
        self.bottleneck_up = nn.Linear(bottleneck_dim, output_size, bias=False)
        self.norm = nn.LayerNorm(output_size, eps=layer_norm_eps)
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    def _conv_length(self, lengths: torch.Tensor) -> torch.Tensor:
        return torch.div(lengths + 2 * self.padding - self.kernel_size, self.stride, rounding_mode="floor") + 1

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input frames -> (B,) output steps (exact, no padding involved)."""
        for _ in self.convs:
            lengths = self._conv_length(lengths).clamp_min(0)
        return lengths

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, target_lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        if x.dim() != 3 or x.shape[2] != self.input_size or x_lens.shape != x.shape[:1]:
            raise ValueError(
                f"CNNAdapter expects x (B, T, {self.input_size}) and x_lens (B,); "
                f"got {tuple(x.shape)} and {tuple(x_lens.shape)}"
            )
        lens = x_lens
        h = x.transpose(1, 2)  # (B, T, D_in) -> (B, D_in, T)
        for conv in self.convs:
            h = h * _valid_mask(lens, h.shape[2])[:, None, :].to(h.dtype)  # zero the padding
            h = nn.functional.glu(conv(h), dim=1)  # (B, D, L) -> (B, 2 D', ceil(L/2)) -> (B, D', ceil(L/2))
            lens = self._conv_length(lens).clamp_min(0)
        y = h.transpose(1, 2)  # (B, D_out, N) -> (B, N, D_out)
        y = y + self.bottleneck_up(nn.functional.gelu(self.bottleneck_down(y)))  # (B, N, D_out)
        y = self.norm(y) * _valid_mask(lens, y.shape[1])[:, :, None].to(y.dtype)
        return y, lens, {}

"""BLSP's CNN modality adapter: 3 strided Conv1d+GLU layers (8x) and a residual bottleneck."""

from typing import Dict, Optional, Tuple

import torch
from torch import nn


def _mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    return torch.arange(T, device=lengths.device)[None] < lengths[:, None]  # (B, T)


class CNNAdapter(nn.Module):
    """Conv1d(k=5, s=2, p=2) + GLU, ``num_layers`` times, then y + W2 GELU(W1 y), LayerNorm.

    Shapes::

        x: (B, T, D_in), x_lens: (B,) -> y: (B, T', D_out), y_lens: (B,)
        T' = T halved (rounding up) num_layers times: L -> floor((L + 2p - k) / s) + 1

    Legend: B batch, T encoder frames, D_in encoder width, D_out LLM width.
    Padded frames are zeroed before every convolution, so an utterance's output in a
    batch equals its output alone.
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
        self.kernel_size, self.stride, self.padding = kernel_size, stride, kernel_size // 2
        widths = [input_size] * num_layers + [output_size]
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

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        for _ in self.convs:
            lengths = torch.div(lengths + 2 * self.padding - self.kernel_size, self.stride, rounding_mode="floor") + 1
        return lengths

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, target_lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        lens = x_lens
        h = x.transpose(1, 2)  # (B, T, D_in) -> (B, D_in, T)
        for conv in self.convs:
            h = h * _mask(lens, h.shape[2])[:, None, :]
            h = nn.functional.glu(conv(h), dim=1)  # (B, D, T) -> (B, D', ceil(T/2))
            lens = torch.div(lens + 2 * self.padding - self.kernel_size, self.stride, rounding_mode="floor") + 1
        y = h.transpose(1, 2)  # (B, D_out, T') -> (B, T', D_out)
        y = y + self.bottleneck_up(nn.functional.gelu(self.bottleneck_down(y)))
        y = self.norm(y) * _mask(lens, y.shape[1])[:, :, None]
        return y, lens, {}

"""BLSP-KD's CFormer adapter: pre-CIF transformer -> CIF -> post-CIF transformer.

Usage::

    adapter = CFormerAdapter(input_size=1280, output_size=4096, attention_heads=20, linear_units=5120)
    y, y_lens, aux = adapter(enc, enc_lens, target_lens)   # training: y_lens == target_lens
    y, y_lens, aux = adapter(enc, enc_lens)                # inference: round(sum(alpha)) tokens
"""

import math
from typing import Dict, Optional, Tuple

import torch
from torch import nn

from espnet_blsp.adapters.cif import cif, scale_alphas


def _pad_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, T) True at padded positions (the key_padding_mask convention)."""
    return torch.arange(T, device=lengths.device)[None] >= lengths[:, None]


def sinusoids(length: int, channels: int, device=None) -> torch.Tensor:
    """(length, channels) sinusoidal positions in Whisper's layout: [sin | cos]."""
    half = channels // 2
    inv_timescales = torch.exp(-math.log(10000.0) / max(half - 1, 1) * torch.arange(half, device=device))
    scaled = torch.arange(length, device=device, dtype=torch.float32)[:, None] * inv_timescales[None]
    return nn.functional.pad(torch.cat([scaled.sin(), scaled.cos()], dim=1), (0, channels - 2 * half))


class TransformerBlock(nn.Module):
    """A stack shaped like Whisper's encoder: sinusoidal positions added at the input,
    pre-LN transformer layers (GELU) with a key-padding mask, a final LayerNorm.

    Shapes: x (B, L, D), lengths (B,) -> (B, L, D), zero at padded positions. Padded
    positions are never attended to, so they cannot change the valid outputs.
    """

    def __init__(self, d_model: int, heads: int, linear_units: int, num_layers: int, dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, heads, linear_units, dropout, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        pad = _pad_mask(lengths, x.shape[1])  # (B, L)
        # An utterance with no valid position would attend to nothing (softmax of all
        # -inf = NaN); let it see position 0. Its outputs are zeroed below anyway.
        key_pad = pad.clone()
        key_pad[:, :1] &= (lengths > 0)[:, None]
        x = x + sinusoids(x.shape[1], x.shape[2], x.device).to(x.dtype)  # (B, L, D)
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=key_pad)  # (B, L, D)
        return self.norm(x).masked_fill(pad[:, :, None], 0.0)


class CFormerAdapter(nn.Module):
    """CFormer: one output vector per transcript token (BLSP-KD, Sec. 3.2).

    Shapes::

        x: (B, T, D_in), x_lens: (B,), target_lens: (B,) or None
        -> y: (B, N, D_out), y_lens: (B,), aux: {"alpha_sum": (B,)}
        N = max(target_lens) in training; at inference N = max(tokens fired by CIF)

    Legend: B batch, T encoder frames, N tokens, D_in encoder width, D model width of
    the transformer blocks, D_out LLM width.

    Steps: Linear(D_in, D) if D != D_in -> pre-CIF block -> alpha = sigmoid(last channel)
    (0 at padded frames) -> CIF over the other D-1 channels -> Linear(D-1, D) (the
    paper's M) -> post-CIF block over the tokens -> Linear(D, D_out). The blocks are shaped
    like the Whisper encoder's layers (BLSP-KD Sec. 4.1), whose dropout is 0: hence the
    default ``dropout_rate`` 0.

    Training (``target_lens`` given): the alphas are rescaled to sum to ``target_lens``
    times the threshold, so CIF fires exactly ``target_lens`` tokens, each of total weight
    ``threshold``. Inference (``inference_rescale``, the default, as in the official code):
    the same with the target n = round(sum(alpha)) (``torch.round``, half to even), at
    least 1 for an utterance with a frame (a short or quiet clip still gives the LLM one
    vector; the official code also clamps to 1) and 0 for one without: every token, the
    last included, has full weight as in training. ``inference_rescale=False``: the raw
    alphas fire at ``threshold`` and a leftover >= ``tail_threshold`` makes one more token
    of weight in [tail_threshold, threshold); an utterance may then fire no token
    (y_lens 0). ``aux["alpha_sum"]`` is the sum of the UNSCALED alphas over valid frames,
    for the quantity loss |sum - n| / n.
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
        dropout_rate: float = 0.0,
        threshold: float = 1.0,
        tail_threshold: float = 0.5,
        inference_rescale: bool = True,
    ):
        super().__init__()
        d = d_model or input_size
        if d < 2 or d % attention_heads:
            raise ValueError(f"d_model {d} must be >= 2 and divisible by attention_heads {attention_heads}")
        if not threshold > 0 or not 0 < tail_threshold <= threshold:
            raise ValueError(
                f"need threshold > 0 and 0 < tail_threshold <= threshold; got {threshold}, {tail_threshold}"
            )
        ffn = linear_units or 4 * d
        self.input_size = input_size
        self.input_proj = nn.Linear(input_size, d) if d != input_size else nn.Identity()
        self.pre = TransformerBlock(d, attention_heads, ffn, num_pre_layers, dropout_rate)
        self.cif_proj = nn.Linear(d - 1, d)  # M: (D-1) -> D
        self.post = TransformerBlock(d, attention_heads, ffn, num_post_layers, dropout_rate)
        self.out_proj = nn.Linear(d, output_size)
        self.threshold, self.tail_threshold = threshold, tail_threshold
        self.inference_rescale = inference_rescale
        self._output_size = output_size

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, target_lens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, Dict[str, torch.Tensor]]:
        if x.dim() != 3 or x.shape[2] != self.input_size or x_lens.shape != x.shape[:1]:
            raise ValueError(
                f"CFormerAdapter expects x (B, T, {self.input_size}) and x_lens (B,); "
                f"got {tuple(x.shape)} and {tuple(x_lens.shape)}"
            )
        pad = _pad_mask(x_lens, x.shape[1])  # (B, T)
        x = x.masked_fill(pad[:, :, None], 0.0)
        h = self.pre(self.input_proj(x), x_lens)  # (B, T, D_in) -> (B, T, D)
        alpha = torch.sigmoid(h[..., -1].float()).masked_fill(pad, 0.0)  # (B, T)
        alpha_sum = alpha.sum(1)  # (B,) unscaled, for the quantity loss

        if target_lens is None and self.inference_rescale:
            # n = round(sum alpha), >= 1 where there is a frame (see the class docstring)
            rounded = torch.round(alpha_sum).long().clamp_min(1)  # (B,)
            target_lens = torch.where(x_lens > 0, rounded, torch.zeros_like(rounded))
        if target_lens is not None:
            scaled = scale_alphas(alpha, x_lens, target_lens) * self.threshold
            # The scaled alphas sum to target_lens (up to round-off); a halfway tail
            # threshold makes that round-off unable to change the count.
            tokens, y_lens = cif(h[..., :-1].float(), scaled, x_lens, self.threshold, 0.5 * self.threshold)
            if not torch.equal(y_lens, target_lens.to(y_lens)):
                bad = (y_lens != target_lens.to(y_lens)).nonzero().flatten().tolist()
                raise ValueError(
                    f"CIF cannot fire the target token counts at batch index(es) {bad}: "
                    f"frames {x_lens[bad].tolist()}, targets {target_lens[bad].tolist()} "
                    "(an utterance with target tokens needs at least one encoder frame)"
                )
        else:
            tokens, y_lens = cif(
                h[..., :-1].float(), alpha, x_lens, self.threshold, self.tail_threshold
            )  # (B, T, D-1) -> (B, N, D-1)
        if tokens.shape[1] == 0:  # no utterance fired a token
            return x.new_zeros(x.shape[0], 0, self._output_size), y_lens, {"alpha_sum": alpha_sum}
        tokens = self.cif_proj(tokens.to(h.dtype))  # (B, N, D-1) -> (B, N, D)
        y = self.out_proj(self.post(tokens, y_lens))  # (B, N, D) -> (B, N, D_out)
        y = y.masked_fill(_pad_mask(y_lens, y.shape[1])[:, :, None], 0.0)
        return y, y_lens, {"alpha_sum": alpha_sum}

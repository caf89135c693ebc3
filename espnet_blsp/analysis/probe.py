"""The ASR probe of BLSP-KD Sec. 5.3 (Table 4): a 2-layer transformer trained with CTC to
read the transcript off the frozen LLM's hidden states at the speech positions.

Usage::

    vocab = ProbeVocab.from_targets(train_targets)          # LLM token ids seen in training
    probe = CTCProbe(input_size=H, num_classes=len(vocab), d_model=256, upsample=2)
    log_probs, lens = probe(x, x_lens)                       # x: (B, n, H) hidden states
    loss = ctc_loss(log_probs, lens, [vocab.encode(t) for t in targets])
    hyps = vocab.decode_batch(greedy_ctc(log_probs, lens))   # LLM token ids per utterance

Why CTC and not an attention decoder: a probe should measure what the states hold, not
what a decoder can guess. CTC emits each token from the frames around it, conditionally
independent of the other outputs, so the probe has no language model of its own; an
autoregressive decoder would learn one from the training transcripts (and on the mini's
~200-word grammar it could nearly write the sentences from a few cues). CTC also needs no
beam search or length heuristics to decode.

CTC needs at least as many frames as targets (plus one per repeated token). The CNN adapter
emits ~6 vectors per second of speech and the CFormer one per transcript token, about the
token rate, so the probe repeats each input position ``upsample`` times (2 by default),
with a learned embedding per copy so that the copies can emit different tokens.

Targets are the LLM tokenizer's ids of the transcript, mapped to a compact class set: the
ids that occur in the training transcripts (class 0 is the CTC blank), so the output layer
is not the LLM's whole vocabulary; an id outside it cannot be emitted (it counts as an error).
"""

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn


class ProbeVocab:
    """LLM token ids <-> probe classes 1..V (0 = blank)."""

    def __init__(self, ids: Sequence[int]):
        self.ids: List[int] = sorted(set(int(i) for i in ids))
        self.index: Dict[int, int] = {t: c + 1 for c, t in enumerate(self.ids)}

    @classmethod
    def from_targets(cls, targets: Sequence[Sequence[int]]) -> "ProbeVocab":
        return cls([t for seq in targets for t in seq])

    def __len__(self) -> int:
        return len(self.ids) + 1  # + blank

    def encode(self, seq: Sequence[int]) -> List[int]:
        """LLM ids -> classes; ids outside the vocabulary are dropped (never emitted)."""
        return [self.index[t] for t in seq if t in self.index]

    def decode(self, classes: Sequence[int]) -> List[int]:
        return [self.ids[c - 1] for c in classes if c > 0]

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> List[List[int]]:
        return [self.decode(c) for c in batch]


def sinusoidal_positions(T: int, d: int, device=None) -> torch.Tensor:
    """(T, d) sine/cosine position encoding (Vaswani et al., 2017)."""
    pos = torch.arange(T, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(T, d, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: d // 2])
    return pe


class CTCProbe(nn.Module):
    """LayerNorm + Linear(H, D) -> repeat x U (+ copy embedding) -> + positions -> 2-layer
    transformer encoder -> Linear(D, V) -> log-softmax.

    Shapes::

        x: (B, n, H), x_lens: (B,)  ->  log_probs: (B, U n, V), lens: (B,) = U x_lens

    Legend: B batch, n hidden-state positions (speech positions of the prompt), H LLM width,
    D probe width, U upsampling factor, V classes (ProbeVocab, blank 0).
    """

    def __init__(self, input_size: int, num_classes: int, d_model: int = 256, num_layers: int = 2,
                 num_heads: int = 4, linear_units: int = 1024, dropout: float = 0.1, upsample: int = 2):
        super().__init__()
        if upsample < 1:
            raise ValueError(f"upsample must be >= 1, got {upsample}")
        self.upsample = upsample
        self.norm_in = nn.LayerNorm(input_size)  # LLM states differ in scale from layer to layer
        self.proj_in = nn.Linear(input_size, d_model)
        self.copy_emb = nn.Parameter(0.02 * torch.randn(upsample, d_model))
        layer = nn.TransformerEncoderLayer(d_model, num_heads, linear_units, dropout, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm_out = nn.LayerNorm(d_model)
        self.proj_out = nn.Linear(d_model, num_classes)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        B, n, _ = x.shape
        U = self.upsample
        h = self.proj_in(self.norm_in(x.float()))  # (B, n, H) -> (B, n, D)
        h = (h[:, :, None] + self.copy_emb[None, None]).reshape(B, n * U, -1)  # (B, n, D) -> (B, U n, D)
        h = h + sinusoidal_positions(n * U, h.shape[-1], h.device)[None]
        lens = x_lens.to(h.device) * U  # (B,)
        pad = torch.arange(n * U, device=h.device)[None] >= lens[:, None]  # (B, U n) True at padding
        h = self.encoder(h, src_key_padding_mask=pad)
        return self.proj_out(self.norm_out(h)).log_softmax(-1), lens  # (B, U n, V)


def ctc_loss(log_probs: torch.Tensor, lens: torch.Tensor, targets: Sequence[Sequence[int]]) -> torch.Tensor:
    """CTC of (B, T, V) log-probs (blank 0) against class sequences: the sum over the batch of
    each utterance's negative log-likelihood divided by its target length, divided by B
    (``F.ctc_loss(reduction="mean")``). Infeasible alignments (too few frames) give 0."""
    flat = torch.tensor([c for t in targets for c in t], dtype=torch.long)
    target_lens = torch.tensor([len(t) for t in targets], dtype=torch.long)
    if (target_lens == 0).any():
        raise ValueError("ctc_loss: an utterance has no target tokens")
    return nn.functional.ctc_loss(log_probs.transpose(0, 1), flat, lens.cpu(), target_lens, blank=0,
                                  reduction="mean", zero_infinity=True)


def greedy_ctc(log_probs: torch.Tensor, lens: torch.Tensor) -> List[List[int]]:
    """Best path: the argmax class per frame, repeats merged, blanks removed."""
    best = log_probs.argmax(-1).tolist()  # (B, T)
    out = []
    for b, n in enumerate(lens.tolist()):
        seq, prev = [], 0
        for c in best[b][: int(n)]:
            if c != prev and c != 0:
                seq.append(c)
            prev = c
        out.append(seq)
    return out

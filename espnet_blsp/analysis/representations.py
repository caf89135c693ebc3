"""Cross-modal prompt representations (BLSP Sec. 2, Appendix A): the LLM's hidden states at
the last prompt position, for speech input and for the paired transcript.

Usage::

    from espnet_blsp.analysis.representations import INSTRUCTIONS, speech_states, text_states
    h_s = speech_states(model, feats, INSTRUCTIONS["CW"], batch_size=8)  # (L+1, N, H) float32
    h_t = text_states(model.llm, transcripts, INSTRUCTIONS["CW"])         # (L+1, N, H) float32

The prompt is the one decoding builds (``blsp_inference``)::

    position  0 .. P-1              P .. P+n-1                   P+n .. P+n+S-1
    content   prefix(instruction)   middle: adapter outputs      suffix (end of the user turn,
                                    (speech) or transcript ids   assistant header)
                                    (text)

The representation of a prompt is the hidden state at its last position, P+n+S-1: the
last suffix token, whose state predicts the first response token ("the hidden state of
the final layer for the last token of the cross-modal prompt, right before response
generation", BLSP Sec. 2). It is kept for every layer: index 0 is the input embedding
there (the same suffix token for every prompt), index L the final, post-norm state.

Legend: N utterances, L LLM layers, H LLM width, B batch, n middle length.
"""

from typing import Dict, List, Sequence

import torch

# BLSP Table 6: the instructions of the representation analysis (codes as in the paper).
INSTRUCTIONS: Dict[str, str] = {
    "CW": "Please continue the following sentence.",
    "SA": "Please classify the emotional tone of the following text.",
    "SR": "Please transcribe the following audio into English text.",
    "ST": "Please translate the following English text into German text.",
}
NAMES: Dict[str, str] = {
    "CW": "continuation writing", "SA": "sentiment analysis", "SR": "speech recognition",
    "ST": "speech translation",
}


def last_prompt_states(llm, prefixes: List[torch.Tensor], middles: List[torch.Tensor],
                       suffixes: List[torch.Tensor], middle_is_speech: bool) -> torch.Tensor:
    """Every layer's hidden state at each prompt's last position: (L+1, B, H) float32.

    ``middles``: B tensors of ids (n_b,) or embeddings (n_b, H), as ``SpeechLLM.build_inputs``
    takes them. The prompts are right-padded, so sample b's last position is ``lengths[b] - 1``.
    """
    batch = llm.build_inputs(prefixes, middles, suffixes, None, middle_is_speech=middle_is_speech)
    states = llm.layer_states(batch)  # L+1 x (B, T, H)
    rows = torch.arange(len(prefixes), device=batch.lengths.device)
    last = batch.lengths - 1  # (B,)
    return torch.stack([h[rows, last] for h in states]).float()  # (L+1, B, H)


def _in_batches(lengths: Sequence[int], batch_size: int):
    """Index lists of batches, longest first (less padding); every index exactly once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    for i in range(0, len(order), batch_size):
        yield order[i : i + batch_size]


def _adapter_outputs(model, feats: Sequence[torch.Tensor], idx: List[int],
                     utt_ids: Sequence[str] = None) -> List[torch.Tensor]:
    """The adapter outputs (n_i, H), in the LLM's dtype, of the utterances ``idx`` of ``feats``:
    padded into one batch, then encoder -> adapter (``model.encode``)."""
    device = model.llm.device
    mats = [feats[i] for i in idx]
    lens = torch.tensor([m.shape[0] for m in mats], device=device)
    speech = torch.nn.utils.rnn.pad_sequence(mats, batch_first=True).to(device)  # (B, T, F)
    names = [utt_ids[i] for i in idx] if utt_ids is not None else None
    y, y_lens, _ = model.encode(speech, lens, names)  # (B, n, H)
    return [y[b, : int(n)].to(model.llm.dtype) for b, n in enumerate(y_lens.tolist())]


@torch.no_grad()
def speech_states(model, feats: Sequence[torch.Tensor], instruction: str, batch_size: int = 8,
                  utt_ids: Sequence[str] = None) -> torch.Tensor:
    """(L+1, N, H) float32: speech -> encoder -> adapter -> LLM under ``instruction``.

    ``feats``: N tensors (T_i, F), log-mel frames or dumped encoder outputs, as the model's
    ``precomputed_encoder`` expects (what stage 2 wrote to ``feats.scp``).
    """
    llm = model.llm
    device = llm.device
    prefix = torch.tensor(llm.template.prefix_ids(instruction), device=device)
    suffix = torch.tensor(llm.template.suffix_ids(), device=device)
    out = torch.empty(llm.num_layers + 1, len(feats), llm.hidden_size)
    for idx in _in_batches([f.shape[0] for f in feats], batch_size):
        middles = _adapter_outputs(model, feats, idx, utt_ids)
        states = last_prompt_states(llm, [prefix] * len(idx), middles, [suffix] * len(idx), True)
        out[:, idx] = states.cpu()
    return out


@torch.no_grad()
def text_states(llm, texts: Sequence[str], instruction: str, batch_size: int = 8) -> torch.Tensor:
    """(L+1, N, H) float32: the transcripts' token ids (``template.text_ids``) -> LLM under
    ``instruction``; the Text+LLM prompt of ``blsp_inference --mode text``."""
    device = llm.device
    prefix = torch.tensor(llm.template.prefix_ids(instruction), device=device)
    suffix = torch.tensor(llm.template.suffix_ids(), device=device)
    ids = [torch.tensor(llm.template.text_ids(t), device=device) for t in texts]
    out = torch.empty(llm.num_layers + 1, len(texts), llm.hidden_size)
    for idx in _in_batches([len(i) for i in ids], batch_size):
        states = last_prompt_states(llm, [prefix] * len(idx), [ids[i] for i in idx], [suffix] * len(idx), False)
        out[:, idx] = states.cpu()
    return out


@torch.no_grad()
def speech_position_states(model, feats: Sequence[torch.Tensor], instruction: str, layers: Sequence[int],
                           batch_size: int = 8, utt_ids: Sequence[str] = None) -> Dict[int, List[torch.Tensor]]:
    """{layer: N tensors (n_i, H) bfloat16}: the states at the n_i speech positions P .. P+n_i-1
    of ``prefix(instruction) + speech``, for the ASR probe. No suffix is needed: the states
    are causal, so what follows the speech cannot change them."""
    llm = model.llm
    device = llm.device
    prefix = torch.tensor(llm.template.prefix_ids(instruction), device=device)
    no_suffix = prefix[:0]
    P = len(prefix)
    out: Dict[int, List[torch.Tensor]] = {layer: [None] * len(feats) for layer in layers}
    for idx in _in_batches([f.shape[0] for f in feats], batch_size):
        middles = _adapter_outputs(model, feats, idx, utt_ids)
        states = llm.layer_states(llm.build_inputs([prefix] * len(idx), middles, [no_suffix] * len(idx), None))
        for layer in layers:
            for b, i in enumerate(idx):
                out[layer][i] = states[layer][b, P : P + middles[b].shape[0]].to(torch.bfloat16).cpu()  # (n_i, H)
    return out

"""Mean cosine similarities of prompt representations (BLSP Tables 7, 8, 12, 13).

Usage::

    paired_similarity(speech[k], text[k])       # Tables 8/13: one instruction, mean over utterances
    instruction_similarity(speech)              # Tables 7/12: (K, K), the same input across instructions

Shapes: ``speech``/``text`` are (K, N, H) (K instructions, N utterances, H width) or, for the
layer-wise variants, (K, L+1, N, H). Every cosine is computed per utterance (row against row)
in float64 and then averaged over the N utterances; nothing is normalised across utterances.
"""

import numpy as np


def cosine(a: np.ndarray, b: np.ndarray, zero: str = "raise") -> np.ndarray:
    """Row-wise cosine similarity of (..., H) arrays -> (...). A zero vector raises, or with
    ``zero="nan"`` gives NaN (centred states can be 0: e.g. layer 0 at the last position)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"cosine: shapes differ, {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    bad = (na == 0) | (nb == 0)
    if bad.any():
        if zero != "nan":
            raise ValueError("cosine: a representation is the zero vector")
        na, nb = np.where(bad, np.nan, na), np.where(bad, np.nan, nb)
    return (a * b).sum(-1) / (na * nb)


def paired_similarity(speech: np.ndarray, text: np.ndarray) -> float:
    """Mean over utterances of cos(speech_i, text_i): (N, H), (N, H) -> float."""
    return float(cosine(speech, text).mean())


def instruction_similarity(states: np.ndarray, zero: str = "raise") -> np.ndarray:
    """(K, N, H) -> (K, K): entry (i, j) is the mean over utterances n of
    cos(states[i, n], states[j, n]); the diagonal is 1."""
    states = np.asarray(states)
    K = states.shape[0]
    out = np.empty((K, K))
    for i in range(K):
        for j in range(K):
            out[i, j] = cosine(states[i], states[j], zero).mean()
    return out


def off_diagonal_mean(matrix: np.ndarray) -> float:
    """Mean of the K(K-1) entries off the diagonal of a (K, K) matrix."""
    matrix = np.asarray(matrix, dtype=np.float64)
    K = matrix.shape[0]
    if K < 2:
        raise ValueError("off_diagonal_mean needs at least 2 instructions")
    return float((matrix.sum() - np.trace(matrix)) / (K * (K - 1)))


def layerwise(speech: np.ndarray, text: np.ndarray) -> dict:
    """Per-layer statistics of (K, L+1, N, H) speech and text states.

    Raw, as the paper: ``paired`` (K, L+1), the mean cos(speech, text) per instruction and
    layer; ``cross_speech`` / ``cross_text`` (K, K, L+1), :func:`instruction_similarity` per layer.

    Centred (``*_c``, same shapes): the states at one position share a large common component
    (the template's last token), which keeps every raw cosine high. ``paired_c`` subtracts
    mu_k, the mean of the text states under instruction k, from both inputs: whether the
    speech carries what sets its transcript apart from the other transcripts (an adapter
    whose output the LLM ignores scores ~0). ``cross_*_c`` subtract mu, the mean of all text
    states: whether the instruction still moves the state once the shared part is gone.
    Undefined (NaN) where the centred states are 0 (layer 0: the same suffix embedding).
    """
    speech, text = np.asarray(speech, dtype=np.float64), np.asarray(text, dtype=np.float64)
    if speech.shape != text.shape or speech.ndim != 4:
        raise ValueError(f"layerwise: need two (K, L+1, N, H) arrays, got {speech.shape} and {text.shape}")
    L1 = speech.shape[1]
    mu_k = text.mean(axis=2, keepdims=True)  # (K, L+1, 1, H)
    mu = text.mean(axis=(0, 2), keepdims=True)  # (1, L+1, 1, H)
    out = {"paired": cosine(speech, text).mean(-1),  # (K, L+1)
           "paired_c": cosine(speech - mu_k, text - mu_k, zero="nan").mean(-1)}
    for name, states in (("speech", speech), ("text", text)):
        out[f"cross_{name}"] = np.stack([instruction_similarity(states[:, l]) for l in range(L1)], axis=-1)
        out[f"cross_{name}_c"] = np.stack([instruction_similarity(states[:, l] - mu[:, l], zero="nan")
                                           for l in range(L1)], axis=-1)
    return out


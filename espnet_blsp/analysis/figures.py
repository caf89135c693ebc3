"""Figures of the representation analysis: t-SNE (BLSP Figures 1 and 3) and layer-wise similarity.

Usage::

    tsne_plot("tsne.png", "train_blsp: ...", speech, text, codes)    # speech, text: (K, N, H)
    layer_plot("layers.png", "...", {"train_blsp": stats, ...})         # stats of similarity.layerwise

t-SNE is scikit-learn's (``pip install 'espnet_blsp[analysis]'``); plots are matplotlib (Agg).
"""

import warnings
from typing import Mapping, Sequence

import numpy as np

# BLSP Figure 1's colours: orange CW, red SA, blue SR, grey ST
COLOURS = {"CW": "tab:orange", "SA": "tab:red", "SR": "tab:blue", "ST": "tab:gray"}
MARKERS = {"speech": "^", "text": "x"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tsne_embed(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """(M, H) -> (M, 2) with scikit-learn's TSNE; perplexity min(30, (M - 1) / 3)."""
    from sklearn.manifold import TSNE

    M = points.shape[0]
    if M < 4:
        raise ValueError(f"t-SNE needs at least 4 points, got {M}")
    perplexity = min(30.0, (M - 1) / 3.0)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        np.asarray(points, dtype=np.float64))


def tsne_plot(path, title: str, speech: np.ndarray, text: np.ndarray, codes: Sequence[str],
              names: Mapping[str, str] = None, seed: int = 0) -> np.ndarray:
    """Plot the t-SNE of speech and text states (K, N, H) under K instructions; returns the
    (2, K, N, 2) coordinates. Colours: instructions; markers: speech (triangle) / text (cross);
    a thin line links each utterance's speech and text under the same instruction."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    K, N, H = speech.shape
    xy = tsne_embed(np.concatenate([speech.reshape(K * N, H), text.reshape(K * N, H)]), seed)
    xy = xy.reshape(2, K, N, 2)
    fig, ax = plt.subplots(figsize=(8, 7))
    for k, code in enumerate(codes):
        colour = COLOURS.get(code, f"C{k}")
        for n in range(N):  # the pairs
            ax.plot(xy[:, k, n, 0], xy[:, k, n, 1], color=colour, lw=0.6, alpha=0.35, zorder=1)
        for m, modality in enumerate(("speech", "text")):
            ax.scatter(xy[m, k, :, 0], xy[m, k, :, 1], c=colour, marker=MARKERS[modality], s=36,
                       linewidths=1.2, zorder=2)
    handles = [Line2D([], [], color=COLOURS.get(c, f"C{k}"), lw=6, label=f"{c}: {(names or {}).get(c, c)}")
               for k, c in enumerate(codes)]
    handles += [Line2D([], [], color="black", marker=MARKERS[m], ls="", markersize=8, label=f"{m} input")
                for m in ("speech", "text")]
    handles.append(Line2D([], [], color="gray", lw=0.8, label="speech-text pair"))
    ax.legend(handles=handles, loc="best", fontsize=9, framealpha=0.85)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("t-SNE dimension 1")
    ax.set_ylabel("t-SNE dimension 2")
    ax.grid(alpha=0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return xy


def layer_plot(path, title: str, stats: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Four panels against the LLM layer (0 = input embeddings): the mean cosine of paired
    speech/text (mean over instructions), and the mean cosine of the same input under
    different instructions (off-diagonal mean; speech per system, text dashed); top raw,
    bottom centred (see :func:`~espnet_blsp.analysis.similarity.layerwise`).

    ``stats``: {system: :func:`~espnet_blsp.analysis.similarity.layerwise` output}.
    """
    from espnet_blsp.analysis.similarity import off_diagonal_mean

    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), sharex=True)
    for row, (sfx, kind) in enumerate((("", "raw"), ("_c", "centred"))):
        left, right = axes[row]
        for i, (system, s) in enumerate(stats.items()):
            layers = np.arange(s["paired"].shape[1])
            with warnings.catch_warnings():  # layer 0 centred: all NaN (one suffix embedding)
                warnings.simplefilter("ignore", RuntimeWarning)
                paired = np.nanmean(s["paired" + sfx], axis=0)
            left.plot(layers, paired, marker="o", ms=3, color=f"C{i}", label=system)
            cross = [off_diagonal_mean(s["cross_speech" + sfx][:, :, l]) for l in layers]
            right.plot(layers, cross, marker="o", ms=3, color=f"C{i}", label=f"{system}: speech")
        first = next(iter(stats.values()))  # the transcripts' states do not depend on the adapter
        layers = np.arange(first["paired"].shape[1])
        right.plot(layers, [off_diagonal_mean(first["cross_text" + sfx][:, :, l]) for l in layers], color="black",
                   ls="--", label="text input (transcripts)")
        left.set_title(f"paired speech / text, same instruction ({kind}; BLSP Tables 8, 13)", fontsize=10)
        right.set_title(f"same input, different instructions ({kind}; BLSP Tables 7, 12)", fontsize=10)
        for ax in (left, right):
            if row == 1:
                ax.set_xlabel("LLM layer (0 = input embeddings)")
            ax.set_ylabel(f"mean cosine similarity ({kind})")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=9)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

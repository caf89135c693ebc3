"""Learning curves (BLSP Figure 4): score, cache, tabulate and plot per-checkpoint points.

A *point* is one checkpoint decoded on a fixed validation subset, one JSON line of
``<out_dir>/points.jsonl``::

    {"epoch": 2, "step": 200, "checkpoint": "2epoch.pth", "mtime_ns": ...,
     "setup": {"data_dir": ..., "keys": [...], "max_new_tokens": 128, "beam_size": 1},
     "wer": 87.5, "self_bleu": 3.1, "self_rouge_l": 21.0, "decode_s": 4.2,
     "hyps": {"asr": {utt: text}, "continuation": {utt: text}}}

Epoch 0 (step 0) is the untrained adapter. ``wer`` is the repeat WER (``metrics.wer``)
against the transcripts, ``self_bleu``/``self_rouge_l`` the continuation scores
(``metrics.self_scores``) against the Text+LLM continuations; ``wer`` is None when the
references have no words. The file is append-only: a re-run adds a line for a checkpoint
that changed, and the last line of an epoch wins.

Losses come from ESPnet's reporter stats, ``{epoch: {"train"|"valid": {key: value}}}``:
``loss``, every ``loss_*`` term and ``acc`` are plotted against ``step(epoch)``.

Nothing here imports torch; matplotlib is imported by ``plot`` only.
"""

import json
import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from espnet_blsp.scoring import metrics

TASKS = ("asr", "continuation")  # repeat WER, continuation Self-BLEU / Self-ROUGE-L
PHASES = ("train", "valid")

# {phase: {key: {epoch: value}}}
Losses = Dict[str, Dict[str, Dict[int, float]]]


def score_point(refs: Mapping[str, str], responses: Mapping[str, str],
                hyps: Mapping[str, Mapping[str, str]]) -> Dict[str, Optional[float]]:
    """Repeat WER of ``hyps["asr"]`` against ``refs`` and Self-BLEU / Self-ROUGE-L of
    ``hyps["continuation"]`` against ``responses`` (both over the hypotheses' utterances)."""
    out: Dict[str, Optional[float]] = {}
    keys = sorted(hyps["asr"])
    out["wer"] = metrics.wer([refs[k] for k in keys], [hyps["asr"][k] for k in keys])["wer"]
    keys = sorted(hyps["continuation"])
    out.update(metrics.self_scores([responses[k] for k in keys], [hyps["continuation"][k] for k in keys]))
    return out


# ------------------------------------------------------------------ points.jsonl

def read_points(path) -> Dict[int, dict]:
    """{epoch: point} of ``points.jsonl`` (the last line of an epoch wins).

    A partial last line (a run killed while writing) is dropped from the file; any other
    unreadable line is an error naming the file and line.
    """
    from espnet_blsp.utils.resumable import complete_lines

    path = Path(path)
    points = {}
    for lineno, line in enumerate(complete_lines(path), 1):
        if not line.strip():
            continue
        try:
            p = json.loads(line)
            points[int(p["epoch"])] = p
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(f"{path}:{lineno}: not a learning-curve point ({e})") from None
    return dict(sorted(points.items()))


def append_point(path, point: dict) -> None:
    """Append one point as a JSON line and make it durable (flush + fsync)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(point, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------- losses

def is_curve_key(key: str) -> bool:
    """The reporter keys drawn as curves: ``loss``, each ``loss_*`` term of the model,
    ``acc`` and ``acc_input`` (not the trainer's own ``loss_scale``, the AMP gradient scale)."""
    return key in ("loss", "acc", "acc_input") or (key.startswith("loss_") and key != "loss_scale")


def loss_curves(stats: Mapping[int, Mapping[str, Mapping[str, object]]]) -> Losses:
    """{phase: {key: {epoch: value}}} of the curve keys in ESPnet's ``Reporter.stats``;
    non-finite values (a key missing in an epoch) are left out."""
    out: Losses = {}
    for epoch in sorted(stats):
        for phase in PHASES:
            for key, v in stats[epoch].get(phase, {}).items():
                if is_curve_key(key) and isinstance(v, (int, float)) and math.isfinite(float(v)):
                    out.setdefault(phase, {}).setdefault(key, {})[int(epoch)] = float(v)
    return out


# ------------------------------------------------------------------- markdown

def _fmt(v: Optional[float], digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def points_table(points: Mapping[int, dict], losses: Losses) -> List[str]:
    """Markdown table: one row per point, with the epoch's train/valid loss and valid acc."""
    loss_cols = [(ph, k) for ph, k in (("train", "loss"), ("valid", "loss"), ("valid", "acc"), ("valid", "acc_input"))
                 if k in losses.get(ph, {})]
    header = ["epoch", "step", "repeat WER↓", "Self-BLEU↑", "Self-ROUGE-L↑"] + [f"{ph} {k}" for ph, k in loss_cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" for _ in header) + "|"]
    for epoch, p in sorted(points.items()):
        cells = [f"{epoch} (untrained)" if epoch == 0 else str(epoch), str(p["step"]), _fmt(p["wer"]),
                 _fmt(p["self_bleu"]), _fmt(p["self_rouge_l"])]
        cells += [_fmt(losses[ph][k].get(epoch), 3) for ph, k in loss_cols]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(tag: str, points: Mapping[int, dict], losses: Losses, about: Sequence[str],
                    png_name: str = "learning_curve.png") -> str:
    """``learning_curve.md``: heading, ``about`` bullet lines, the PNG link, the table."""
    out = [f"# Learning curve: {tag}", ""] + [f"- {a}" for a in about]
    out += ["", f"![learning curve]({png_name})", ""] + points_table(points, losses)
    return "\n".join(out) + "\n"


def read_table(md_path) -> List[str]:
    """The first markdown table (its ``|`` lines) of a ``learning_curve.md``."""
    lines, started = [], False
    for line in Path(md_path).read_text(encoding="utf-8").splitlines():
        if line.startswith("|"):
            lines.append(line)
            started = True
        elif started:
            break
    return lines


# ----------------------------------------------------------------------- plot

def plot(path, title: str, points: Mapping[int, dict], losses: Losses, step: Callable[[int], int]) -> None:
    """Three panels against training steps: repeat WER; Self-BLEU and Self-ROUGE-L; the
    train (solid) and valid (dashed) losses, with acc on a right-hand axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = sorted(points)
    steps = [points[e]["step"] for e in epochs]
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), sharex=True, constrained_layout=True)

    def scores(ax, names):
        top = 0.0
        for key, label, marker in names:
            xs = [s for s, e in zip(steps, epochs) if points[e][key] is not None]
            ys = [points[e][key] for e in epochs if points[e][key] is not None]
            ax.plot(xs, ys, marker=marker, label=label)
            top = max([top] + ys)
        ax.set_ylim(bottom=0, top=top * 1.08 if top > 0 else 1)  # all-zero scores: not a [-0.05, 0.05] axis
        if 0 in points:
            ax.axvline(0, color="grey", lw=0.8, ls=":", label="step 0: untrained adapter")
        ax.set_xlabel("training steps", fontsize=12)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10)
        ax.tick_params(labelsize=11)

    scores(axes[0], [("wer", "repeat WER", "o")])
    axes[0].set_title("Validation ASR (repeat) WER ↓", fontsize=13)
    axes[0].set_ylabel("WER (%)", fontsize=12)
    scores(axes[1], [("self_bleu", "Self-BLEU", "o"), ("self_rouge_l", "Self-ROUGE-L", "s")])
    axes[1].set_title("Validation continuation vs Text+LLM ↑", fontsize=13)
    axes[1].set_ylabel("score (0-100)", fontsize=12)

    ax = axes[2]
    ax.set_title("Training and validation loss", fontsize=13)
    ax.set_xlabel("training steps", fontsize=12)
    ax.tick_params(labelsize=11)
    ax.grid(alpha=0.3)
    loss_keys = sorted({k for ph in losses.values() for k in ph if not k.startswith("acc")},
                       key=lambda k: (k != "loss", k))
    # a single loss term equals the total: drawn once, as "loss"
    loss_keys = [k for k in loss_keys if k == "loss" or any(
        losses[ph].get(k) != losses[ph].get("loss") for ph in losses)]
    values = []
    for i, key in enumerate(loss_keys):
        for phase, ls in (("train", "-"), ("valid", "--")):
            curve = losses.get(phase, {}).get(key)
            if curve:
                ax.plot([step(e) for e in curve], list(curve.values()), ls=ls, marker=".", color=f"C{i}",
                        label=f"{phase} {key}")
                values += list(curve.values())
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_yscale("log")
    ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""), fontsize=12)
    handles, labels = ax.get_legend_handles_labels()
    accs = [(k, color) for k, color in (("acc", "grey"), ("acc_input", "black"))
            if any(k in losses.get(ph, {}) for ph in PHASES)]
    if accs:
        ax2 = ax.twinx()
        for key, color in accs:
            for phase, ls in (("train", "-"), ("valid", "--")):
                curve = losses.get(phase, {}).get(key)
                if curve:
                    ax2.plot([step(e) for e in curve], list(curve.values()), ls=ls, marker=".",
                             color=color, label=f"{phase} {key}")
        ax2.set_ylabel("acc", fontsize=12)
        ax2.tick_params(labelsize=11)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    if handles:
        ax.legend(handles, labels, fontsize=10)
    else:
        ax.text(0.5, 0.5, "no reporter stats\n(checkpoint.pth not found)", ha="center", va="center",
                transform=ax.transAxes, fontsize=12)
    fig.suptitle(title, fontsize=15)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)

#!/usr/bin/env python3
"""Representation analysis (BLSP Sec. 2, Appendix A and D; Figures 1 and 3, Tables 7, 8, 12, 13).

Usage:
    python -m espnet_blsp.bin.analyze --exp_dir exp/train_blsp --data_dir dump/mini_test \
        --out_dir exp/train_blsp/analysis
    # with the ASR-pretraining baseline (conf/mini/train_asr_pretrain.yaml) beside it:
    python -m espnet_blsp.bin.analyze --exp_dir exp/train_blsp --data_dir dump/mini_test \
        --compare ASR-pretraining=exp/train_asr_pretrain

For the first ``--num_utts`` utterance ids (sorted) of ``--data_dir`` (``feats.scp`` of
stage 2 and ``text``, the transcripts), each of the four instructions of BLSP Table 6
(CW continuation, SA sentiment, SR recognition, ST translation) prompts the LLM twice: with
the speech (encoder -> adapter) and with the transcript (Text+LLM). The representation is
every layer's hidden state at the last prompt position, just before the response
(:mod:`espnet_blsp.analysis.representations`). Systems: the trained model of ``--exp_dir``
(its checkpoint as stage 5 picks it, or ``--checkpoint``), the same model with its adapter
at its seeded random init (the floor, as ``blsp_inference --mode untrained``; off with
``--no_untrained``), and each ``--compare NAME=EXP_DIR``.

Writes to ``--out_dir`` (default ``<exp_dir>/analysis``):

    analysis.md             the tables (mean cosine similarities; make_results.py embeds it)
    similarity.json         the same numbers, and the per-layer ones
    tsne_<system>.png       t-SNE of the speech and text states at ``--layer`` (first
                            ``--tsne_utts`` utterances): colours = instructions, triangles =
                            speech, crosses = text, lines link the pairs
    layers.png              the similarities against the LLM layer (every layer)
    states_<system>.npz     per system: the states at ``--layer`` and the per-layer statistics
                            (a re-run with the same settings reuses them)
    cmd                     this command line
"""

import argparse
import importlib.util
import json
import logging
import re
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

from espnet_blsp.analysis.representations import INSTRUCTIONS, NAMES
from espnet_blsp.analysis.similarity import layerwise, off_diagonal_mean

CODES = list(INSTRUCTIONS)
UNTRAINED = "untrained adapter"


def parse_compare(spec: str) -> Tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=EXP_DIR, got {spec!r}")
    return name.strip(), Path(path)


def slug(name: str) -> str:
    """A file-name form of a system name: ``ASR-pretraining`` -> ``asr_pretraining``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_") or "system"


def read_inputs(data_dir: Path, num_utts: int) -> Tuple[List[str], Dict[str, str], Dict[str, str]]:
    """(keys, feats.scp entries, transcripts) of the first ``num_utts`` sorted ids."""
    from espnet_blsp.data.kaldi_dir import read_kv

    for name, what in (("feats.scp", "the features of stage 2 (dump/<set>)"),
                       ("text", "the transcripts: each utterance's speech is paired with its transcript")):
        if not (data_dir / name).exists():
            raise FileNotFoundError(f"{data_dir / name} not found: the analysis needs {what}")
    feats, texts = read_kv(data_dir / "feats.scp"), read_kv(data_dir / "text")
    if not texts:
        raise ValueError(f"{data_dir / 'text'} holds no transcripts")
    keys = sorted(feats)[:num_utts]
    lost = [k for k in keys if k not in texts]
    if lost:
        raise ValueError(f"{data_dir / 'text'} has no transcript for {len(lost)} utterances of feats.scp, "
                         f"e.g. {lost[:5]}")
    empty = [k for k in keys if not texts[k].strip()]
    if empty:
        raise ValueError(f"{data_dir / 'text'}: empty transcript for {empty[:5]}")
    if len(keys) < 2:
        raise ValueError(f"{data_dir}: the analysis needs at least 2 utterances, got {len(keys)}")
    return keys, feats, texts


def plan_systems(args) -> List[dict]:
    """The systems to analyse, in table order, each checked (config + checkpoint) up front."""
    from espnet_blsp.bin.blsp_inference import find_checkpoint, load_config

    systems = []
    for name, exp_dir, checkpoint in [(args.exp_dir.resolve().name, args.exp_dir, args.checkpoint)] + [
            (n, p, None) for n, p in args.compare]:
        load_config(exp_dir)  # config.yaml, or a clear error
        ckpt = find_checkpoint(exp_dir, checkpoint)
        systems.append({"name": name, "exp_dir": exp_dir, "checkpoint": ckpt})
    if not args.no_untrained:
        systems.insert(1, {"name": UNTRAINED, "exp_dir": args.exp_dir, "checkpoint": None})
    names = [s["name"] for s in systems]
    if len(set(names)) != len(names) or len({slug(n) for n in names}) != len(names):
        raise ValueError(f"system names must differ (also as file names): {names}")
    return systems


def check_layer(layer: int, num_layers: int) -> int:
    """``--layer`` as an index 0..L (-1: L, the final layer); out of range raises."""
    if layer == -1:
        return num_layers
    if not 0 <= layer <= num_layers:
        raise ValueError(f"--layer {layer} is out of range: the LLM has {num_layers} layers, so 0..{num_layers} "
                         f"(0 = input embeddings, {num_layers} or -1 = the final layer)")
    return layer


def llm_num_layers(llm_conf: dict) -> int:
    """L, the decoder layers of the experiment's LLM (from its config.json; no weights loaded)."""
    from transformers import AutoConfig

    path = llm_conf["model_name_or_path"]
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as e:
        raise FileNotFoundError(f"cannot read the LLM config of {path}: {e}") from None
    return config.get_text_config().num_hidden_layers


def _llm_key(llm_conf: dict) -> tuple:
    return tuple(str(llm_conf.get(k)) for k in ("model_name_or_path", "dtype", "prompt_template",
                                                 "attn_implementation"))


def extract(model, keys, feats_scp, texts, batch_size, text_cache: dict, llm_key) -> Tuple[np.ndarray, np.ndarray]:
    """Speech and text states (K, L+1, N, H) under the Table 6 instructions; the text states
    are computed once per LLM (they do not depend on the adapter)."""
    import kaldiio
    import torch

    from espnet_blsp.analysis.representations import speech_states, text_states

    mats = [torch.from_numpy(kaldiio.load_mat(feats_scp[k]).copy()) for k in keys]
    speech = np.stack([speech_states(model, mats, INSTRUCTIONS[c], batch_size, keys).numpy() for c in CODES])
    if llm_key not in text_cache:
        text_cache[llm_key] = np.stack([
            text_states(model.llm, [texts[k] for k in keys], INSTRUCTIONS[c], batch_size).numpy() for c in CODES])
    return speech, text_cache[llm_key]


def load_states(path: Path, setup: dict) -> Optional[dict]:
    """The arrays of ``path`` if it was made with ``setup``, else None."""
    if not path.exists():
        return None
    with np.load(path) as z:
        if json.loads(str(z["setup"])) != setup:
            logging.info(f"{path}: made with other settings, recomputed")
            return None
        return {k: z[k] for k in z.files if k != "setup"}


def save_states(path: Path, setup: dict, speech: np.ndarray, text: np.ndarray, layer: int) -> dict:
    stats = layerwise(speech, text)
    arrays = {"speech": speech[:, layer].astype(np.float32), "text": text[:, layer].astype(np.float32), **stats}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, setup=np.array(json.dumps(setup)), **arrays)
    tmp.replace(path)  # a killed run leaves no half-written file behind
    return arrays


def _table(header: List[str], rows: List[List[str]]) -> List[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"] + \
        ["| " + " | ".join(r) + " |" for r in rows]


def _matrix(matrix: np.ndarray, suffix: str) -> List[str]:
    labels = [f"{c}-{suffix}" for c in CODES]
    return _table([""] + labels, [[labels[i]] + [f"{v:.3f}" for v in matrix[i]] for i in range(len(CODES))])


def render_markdown(tag: str, results: Dict[str, dict], layer: int, num_layers: int, about: List[str],
                    figures: List[Tuple[str, str]]) -> str:
    """analysis.md: a summary, BLSP Tables 8/13 and 7/12 for every system, the figures."""
    first = next(iter(results.values()))
    layer_name = "the final layer" if layer == num_layers else f"layer {layer} of {num_layers}"
    out = [f"# Representation analysis: {tag}", ""] + [f"- {a}" for a in about] + [""]
    out += ["## Summary", "",
            f"Mean cosine similarity at {layer_name}: paired speech/text under the same instruction "
            "(mean of the four instructions; high = speech is read like its transcript), and the same "
            "input under different instructions (mean of the off-diagonal entries; low = the instruction "
            "changes the representation, i.e. it is followed). Raw: as the paper computes them. Centred: "
            "after subtracting the mean text state (per instruction for the paired column, over all "
            "instructions for the other), since all states at this position share a large common part "
            "that keeps every raw cosine high; an adapter whose output the LLM ignores gets a centred "
            "paired similarity near 0.", ""]
    rows = [[name, f"{r['paired'][:, layer].mean():.3f}", f"{np.nanmean(r['paired_c'][:, layer]):.3f}",
             f"{off_diagonal_mean(r['cross_speech'][:, :, layer]):.3f}",
             f"{off_diagonal_mean(r['cross_speech_c'][:, :, layer]):.3f}"] for name, r in results.items()]
    rows.append(["text input (transcripts)", "1.000", "1.000", f"{off_diagonal_mean(first['cross_text'][:, :, layer]):.3f}",
                 f"{off_diagonal_mean(first['cross_text_c'][:, :, layer]):.3f}"])
    out += _table(["system", "paired speech/text↑ raw", "centred", "same speech, other instruction: raw",
                   "centred"], rows)
    out += ["", "## Paired speech/text under the same instruction (BLSP Tables 8, 13)", ""]
    paired_rows = []
    for name, r in results.items():
        for key, label in (("paired", name), ("paired_c", f"{name}, centred")):
            v = r[key][:, layer]
            paired_rows.append([label] + [f"{x:.3f}" for x in v] + [f"{np.nanmean(v):.3f}"])
    out += _table(["system"] + CODES + ["mean"], paired_rows)
    out += ["", "## The same input under different instructions (BLSP Tables 7, 12)", ""]
    for name, r in results.items():
        out += [f"### {name} (speech)", ""] + _matrix(r["cross_speech"][:, :, layer], "S") + [""]
    out += ["### text input (the transcripts; the target)", ""] + _matrix(first["cross_text"][:, :, layer], "T")
    out += ["", "## Figures", ""]
    for caption, png in figures:
        out += [f"![{caption}]({png})", ""]
    return "\n".join(out).rstrip() + "\n"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, type=Path, help="training dir (config.yaml + checkpoint)")
    p.add_argument("--data_dir", required=True, type=Path, help="dump/<set> with feats.scp and text")
    p.add_argument("--out_dir", type=Path, default=None, help="default: <exp_dir>/analysis")
    p.add_argument("--compare", action="append", default=[], type=parse_compare,
                   help="another system NAME=EXP_DIR, e.g. ASR-pretraining=exp/train_asr_pretrain (repeatable)")
    p.add_argument("--checkpoint", default=None, help="file name inside --exp_dir (default: as stage 5)")
    p.add_argument("--no_untrained", action="store_true", help="leave out the untrained-adapter floor")
    p.add_argument("--num_utts", type=int, default=100, help="the first N utterance ids (sorted)")
    p.add_argument("--tsne_utts", type=int, default=25, help="utterances in the t-SNE plots (BLSP Figure 1: 25)")
    p.add_argument("--layer", type=int, default=-1,
                   help="LLM layer of the tables and t-SNE: 0 = input embeddings .. L = final (-1)")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--seed", type=int, default=0, help="t-SNE seed")
    return p


def run(args, command: str) -> Dict[str, dict]:
    from espnet_blsp.analysis.figures import layer_plot, tsne_plot
    from espnet_blsp.bin.blsp_inference import build_model, load_config, load_trainable_state
    from espnet_blsp.utils.dtype import resolve_device

    for module, why in (("matplotlib", "the figures"), ("sklearn", "t-SNE")):
        if importlib.util.find_spec(module) is None:  # fail before extracting, not after
            raise ValueError(f"{why} need {module}: pip install scikit-learn matplotlib "
                             "(or pip install 'espnet_blsp[analysis]')")
    if args.num_utts < 2 or args.tsne_utts < 2:
        raise ValueError(f"--num_utts and --tsne_utts must be >= 2, got {args.num_utts}, {args.tsne_utts}")
    out_dir = args.out_dir or args.exp_dir / "analysis"
    keys, feats_scp, texts = read_inputs(args.data_dir, args.num_utts)
    systems = plan_systems(args)
    num_layers = llm_num_layers(load_config(args.exp_dir)["llm_conf"])
    layer = check_layer(args.layer, num_layers)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cmd").write_text(command + "\n", encoding="utf-8")

    device = resolve_device(args.device)
    text_cache: dict = {}
    models: dict = {}  # exp dir -> (model, its adapter's initial trainable state)
    results: Dict[str, dict] = {}
    for s in systems:
        cfg, ckpt = load_config(s["exp_dir"]), s["checkpoint"]
        if llm_num_layers(cfg["llm_conf"]) != num_layers:
            raise ValueError(f"{s['exp_dir']}: its LLM has {llm_num_layers(cfg['llm_conf'])} layers, "
                             f"that of {args.exp_dir} {num_layers}: the layer-wise plot needs the same LLM")
        setup = {"stats": 2, "data_dir": str(args.data_dir), "keys": keys, "layer": layer, "instructions": INSTRUCTIONS,
                 "exp_dir": str(s["exp_dir"]), "checkpoint": str(ckpt) if ckpt else None,
                 "checkpoint_mtime_ns": ckpt.stat().st_mtime_ns if ckpt else None}
        path = out_dir / f"states_{slug(s['name'])}.npz"
        arrays = load_states(path, setup)
        if arrays is None:
            key = str(Path(s["exp_dir"]).resolve())
            if key not in models:
                model = build_model(s["exp_dir"], device, None, load=False)
                models[key] = (model, {k: v.clone() for k, v in model.state_dict().items()})
            model, init_state = models[key]
            # the trainable weights only: the checkpoint's, or the seeded random init (the floor)
            model.load_state_dict(load_trainable_state(ckpt) if ckpt else init_state)
            logging.info(f"{s['name']}: {len(keys)} utterances x {len(CODES)} instructions x speech/text "
                         f"of {args.data_dir} ({ckpt or 'untrained adapter'}) -> {path}")
            speech, text = extract(model, keys, feats_scp, texts, args.batch_size, text_cache,
                                   _llm_key(cfg["llm_conf"]))
            arrays = save_states(path, setup, speech, text, layer)
        results[s["name"]] = arrays
        logging.info(f"{s['name']}: paired speech/text {arrays['paired'][:, layer].mean():.3f}, same speech "
                     f"under other instructions {off_diagonal_mean(arrays['cross_speech'][:, :, layer]):.3f}")

    tag = args.exp_dir.resolve().name
    n_tsne = min(args.tsne_utts, len(keys))
    figures = []
    for name, r in results.items():
        png = f"tsne_{slug(name)}.png"
        title = (f"{name}: t-SNE of the LLM state before the response ({'final layer' if layer == num_layers else f'layer {layer}'}),"
                 f"\n{n_tsne} utterances of {args.data_dir.name} x 4 instructions x speech/text")
        tsne_plot(out_dir / png, title, r["speech"][:, :n_tsne], r["text"][:, :n_tsne], CODES, NAMES, args.seed)
        figures.append((f"t-SNE: {name}", png))
    layer_plot(out_dir / "layers.png", f"{tag}: similarity at the last prompt position, every LLM layer "
               f"({len(keys)} utterances of {args.data_dir.name})", {n: r for n, r in results.items()})
    figures.append(("layer-wise similarity", "layers.png"))

    about = [f"experiment `{args.exp_dir}`; data: the first {len(keys)} utterance ids (sorted) of `{args.data_dir}`",
             "representation: the LLM's hidden state at the last prompt position (just before the response), "
             "speech (encoder -> adapter) or the transcript as the input",
             "instructions (BLSP Table 6): " + "; ".join(f"{c} \"{INSTRUCTIONS[c]}\"" for c in CODES),
             "systems: " + "; ".join(f"{s['name']} ({'`' + str(s['checkpoint']) + '`' if s['checkpoint'] else 'adapter at its seeded random init'})"
                                     for s in systems)]
    (out_dir / "analysis.md").write_text(render_markdown(tag, results, layer, num_layers, about, figures),
                                         encoding="utf-8")
    summary = {"layer": layer, "num_layers": num_layers, "keys": keys, "instructions": INSTRUCTIONS,
               "systems": {name: {"paired": dict(zip(CODES, r["paired"][:, layer].tolist())),
                                  "cross_speech": r["cross_speech"][:, :, layer].tolist(),
                                  "cross_text": r["cross_text"][:, :, layer].tolist(),
                                  "paired_by_layer": r["paired"].mean(0).tolist(),
                                  "cross_speech_by_layer": [off_diagonal_mean(r["cross_speech"][:, :, l])
                                                            for l in range(num_layers + 1)],
                                  "paired_centred": dict(zip(CODES, r["paired_c"][:, layer].tolist())),
                                  "cross_speech_centred": r["cross_speech_c"][:, :, layer].tolist(),
                                  "paired_centred_by_layer": [None if np.isnan(v).all() else float(np.nanmean(v))
                                                              for v in r["paired_c"].T]}
                           for name, r in results.items()}}
    (out_dir / "similarity.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    logging.info(f"wrote {out_dir}/analysis.md, similarity.json, layers.png and {len(results)} t-SNE plots")
    return results


def main(cmd: Optional[List[str]] = None) -> Dict[str, dict]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    command = "python -m espnet_blsp.bin.analyze " + shlex.join(cmd if cmd is not None else sys.argv[1:])
    try:
        return run(args, command)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"analyze: error: {e}") from None


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Export a trained model as a self-contained directory: config, trainable weights, model card.

Usage:
    python -m espnet_blsp.bin.export --exp_dir exp/train_blsp --out_dir export/train_blsp
    python -c "import espnet_blsp; print(espnet_blsp.load('export/train_blsp').respond('clip.wav'))"

Writes ``out_dir/``:
    config.yaml         the training config, as ESPnet wrote it
    model.safetensors   the trainable weights only (adapter; Partial LoRA and the encoder when
                        trained): megabytes, not the frozen LLM
    export.json         the record: base models (recorded name, the path found at export time,
                        the config.json fields and a weight fingerprint that ``load`` checks),
                        the source checkpoint, every tensor's shape
    README.md           model card: base models, training data, the results of exp RESULTS.md
                        (with the figures it links), the commands that trained it, how to load it

``espnet_blsp.load(out_dir)`` (and ``bin/chat``, ``bin/demo``) accepts the directory; the base
models are found at their recorded paths, or given with ``llm=`` / ``speech_encoder=``, and a
different base model is refused with the differing fields named.
"""

import argparse
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path
from typing import List, Optional

from espnet_blsp.api import EXPORT_FORMAT, EXPORT_META, EXPORT_WEIGHTS, _config_signature, load, weight_fingerprint

PEFT_NOTE = (
    "The Partial LoRA weights (`llm.model.*.lora_A` / `lora_B` in `model.safetensors`) are not in "
    "peft's adapter format on purpose: peft's LoRA adds its update at every position, while "
    "Partial LoRA (BLSP-KD) adds it at the speech positions only and leaves every text position "
    "to the frozen LLM. Loaded with peft, the same matrices would change how the LLM reads the "
    "instruction, the template and its own reply, i.e. give a different model. Load them with "
    "`espnet_blsp.load`."
)

PEFT_NOTE_NO_LORA = (
    "This model has no LoRA: only the adapter was trained. A model with Partial LoRA (BLSP-KD variant 7) "
    "keeps those weights in `model.safetensors` too, not in peft's adapter format: peft adds the LoRA "
    "update at every position, Partial LoRA at the speech positions only."
)


def _recipe_dir(exp_dir: Path) -> Path:
    """``egs2/blsp`` for ``egs2/blsp/exp/<tag>``: the dir that the config's relative paths start from."""
    return exp_dir.resolve().parent.parent


def _count_lines(path: Path) -> Optional[int]:
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except OSError:
        return None


def training_data(cfg: dict, exp_dir: Path) -> List[str]:
    """One markdown line per train/valid data dir of the config, with its utterance count."""
    lines = []
    for part in ("train", "valid"):
        entries = cfg.get(f"{part}_data_path_and_name_and_type") or []
        dirs = sorted({str(Path(e[0]).parent) for e in entries})
        for d in dirs:
            names = ", ".join(e[1] for e in entries if str(Path(e[0]).parent) == d)
            n = _count_lines(_recipe_dir(exp_dir) / d / "text") or _count_lines(Path(d) / "text")
            count = f", {n} utterances" if n is not None else ""
            lines.append(f"- {part}: `{d}` ({names}{count})")
    return lines


def _demote(markdown: str) -> str:
    """Headings one level down, so a RESULTS.md sits inside the model card."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def copy_linked_files(markdown: str, src_dir: Path, out_dir: Path) -> List[str]:
    """Copy the local files a markdown text links to (``](rel/path)``) from src_dir to out_dir."""
    copied = []
    for rel in re.findall(r"\]\(([^)\s]+)\)", markdown):
        if "://" in rel or rel.startswith(("#", "/")):
            continue
        src = src_dir / rel
        if src.is_file():
            (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out_dir / rel)
            copied.append(rel)
    return copied


def model_card(tag: str, cfg: dict, meta: dict, exp_dir: Path, out_dir: Path) -> str:
    mc = cfg.get("model_conf", {})
    losses = ", ".join(f"{k[:-7]} {v}" for k, v in mc.items() if k.endswith("_weight") and v) or "-"
    llm_conf = cfg["llm_conf"]
    lora = llm_conf.get("lora_conf")
    tuned = ["adapter"] + (["speech encoder"] if not cfg["speech_encoder_conf"].get("freeze", True) else []) + (
        [f"Partial LoRA (r {lora.get('r')}, alpha {lora.get('alpha')}, on {lora.get('target_modules')})"]
        if lora else [])
    base = meta["base_models"]
    out = [
        f"# espnet_blsp model: {tag}",
        "",
        "A BLSP / BLSP-KD model (espnet_blsp): a frozen Whisper encoder, a trained "
        f"`{cfg['speech_adapter']}` adapter and a frozen LLM. This directory holds only what training "
        f"changed ({meta['num_trainable_params']:,} parameters: {', '.join(tuned)}); the base models "
        "are loaded from their own directories.",
        "",
        "## Base models",
        "",
        "| role | recorded in config.yaml | found at export time | model_type |",
        "|---|---|---|---|",
    ]
    for key, role in (("speech_encoder", "speech encoder"), ("llm", "LLM")):
        b = base[key]
        model_type = b["config"].get("model_type", "?")
        out.append(f"| {role} | `{b['name_or_path']}` | `{b['resolved_path']}` | {model_type} |")
    out += [
        "",
        f"Prompt template: `{llm_conf.get('prompt_template', 'blsp')}`; LLM dtype: `{llm_conf.get('dtype')}`; "
        f"losses: {losses}.",
        "",
        "## Use",
        "",
        "```python",
        "import espnet_blsp",
        f"model = espnet_blsp.load(\"{out_dir}\")  # llm=..., speech_encoder=... if the base models moved",
        "print(model.respond(\"clip.wav\", \"Please repeat the following words.\"))",
        "```",
        "",
        f"or `python -m espnet_blsp.bin.chat --exp_dir {out_dir}`, "
        f"`python -m espnet_blsp.bin.demo --exp_dir {out_dir}`.",
        "",
        "## Training data",
        "",
    ]
    out += training_data(cfg, exp_dir) or ["- (not recorded in config.yaml)"]
    for name in ("run.sh.cmd", "train.cmd"):
        path = exp_dir / name
        if path.is_file():
            out += ["", f"## Command (`{name}`)", "", "```", path.read_text(encoding="utf-8").strip(), "```"]
    results = exp_dir / "RESULTS.md"
    if results.is_file():
        text = results.read_text(encoding="utf-8")
        copy_linked_files(text, exp_dir, out_dir)
        out += ["", "## Results (exp RESULTS.md)", "", _demote(text).strip()]
    else:
        out += ["", "## Results", "", f"No RESULTS.md in {exp_dir} (stage 6 writes it)."]
    out += ["", "## Files", "",
            f"- `config.yaml`: the training config; `{EXPORT_WEIGHTS}`: the trainable weights "
            f"(from `{meta['checkpoint']}`); `{EXPORT_META}`: the base-model record `load` checks.",
            "", "## Partial LoRA and peft", "", PEFT_NOTE if lora else PEFT_NOTE_NO_LORA]
    return "\n".join(out) + "\n"


def export(exp_dir, out_dir, checkpoint=None, speech_encoder=None, llm=None, overwrite=False) -> Path:
    """Write the export of ``exp_dir`` to ``out_dir`` (see the module docstring); returns out_dir."""
    from safetensors.torch import save_file

    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    if (exp_dir / EXPORT_META).is_file():
        raise ValueError(f"{exp_dir} is already an export; export an exp dir (exp/<tag>)")
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / EXPORT_META).is_file():
        raise FileExistsError(f"{out_dir} exists and is not an export: choose an empty or new --out_dir")
    if (out_dir / EXPORT_META).is_file() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds an export: pass --overwrite to replace it")
    chat = load(exp_dir, device="cpu", checkpoint=checkpoint, speech_encoder=speech_encoder, llm=llm)
    state = {k: v.detach().cpu().contiguous() for k, v in chat.model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_dir / EXPORT_WEIGHTS), metadata={"format": "pt", "source": str(chat.weights)})
    shutil.copyfile(exp_dir / "config.yaml", out_dir / "config.yaml")
    cfg = chat.config
    meta = {
        "format": EXPORT_FORMAT,
        "version": 1,
        "created": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "exp_dir": str(exp_dir.resolve()),
        "checkpoint": str(Path(chat.weights).resolve()),
        "base_models": {
            key: {
                "name_or_path": cfg[conf]["model_name_or_path"],
                "resolved_path": str(Path(chat.base_models[key]).resolve()),
                "config": _config_signature(chat.base_models[key]),
            }
            for key, conf in (("speech_encoder", "speech_encoder_conf"), ("llm", "llm_conf"))
        },
        "fingerprint": weight_fingerprint(chat.model),
        "prompt_template": chat.template.kind,
        "num_trainable_params": int(sum(v.numel() for v in state.values())),
        "tensors": {k: [list(v.shape), str(v.dtype).replace("torch.", "")] for k, v in state.items()},
    }
    (out_dir / EXPORT_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    (out_dir / "README.md").write_text(model_card(exp_dir.resolve().name, cfg, meta, exp_dir, out_dir),
                                       encoding="utf-8")
    logging.info(f"exported {chat.weights} ({len(state)} tensors, {meta['num_trainable_params']:,} parameters) "
                 f"-> {out_dir}")
    return out_dir


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp_dir", required=True, help="exp/<tag> after stage 4 (config.yaml + checkpoints)")
    p.add_argument("--out_dir", required=True, help="the export directory (new, empty, or an older export)")
    p.add_argument("--checkpoint", default=None, help="a file name inside exp_dir (default: stage 5's choice)")
    p.add_argument("--speech_encoder", default=None, help="Whisper dir instead of the recorded one")
    p.add_argument("--llm", default=None, help="LLM dir instead of the recorded one")
    p.add_argument("--overwrite", action="store_true", help="replace an existing export in out_dir")
    return p


def main(cmd=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(cmd)
    try:
        out = export(args.exp_dir, args.out_dir, args.checkpoint, args.speech_encoder, args.llm, args.overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        sys.exit(f"export: {e}")
    print(out)


if __name__ == "__main__":
    main()

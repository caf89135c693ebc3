"""Where the pretrained speech encoder and LLM may come from; nothing is ever downloaded.

    resolve_model_dir("assets/whisper-base", "speech_encoder")   # -> Path("assets/whisper-base")
    resolve_model_dir("openai/whisper-small", "speech_encoder")  # -> its snapshot in the HF cache
    check_model_path("/no/such/llm", "llm")                      # -> ["--llm /no/such/llm: ..."]

Accepted for ``--speech_encoder`` and ``--llm``:

- a local directory holding ``config.json`` (the LLM's also a tokenizer: ``tokenizer.json``,
  ``tokenizer.model`` or ``vocab.json``); the speech encoder's config must be a Whisper one;
- a hub id (``org/name``) whose snapshot is already in the local Hugging Face cache
  (``HF_HUB_CACHE``, default ``~/.cache/huggingface/hub``; fill it with
  ``huggingface-cli download org/name``), with the same files.

Anything else is a ``ModelPathError`` whose message is one line naming the option and path.
"""

import json
import os
from pathlib import Path
from typing import List

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
OPTIONS = {"speech_encoder": "--speech_encoder", "llm": "--llm", "whisper": "--whisper"}


class ModelPathError(FileNotFoundError):
    """A model path that is neither a usable local dir nor a cached hub id (one line)."""


def is_hub_id(name: str) -> bool:
    """``org/name`` (one slash, not starting with / . ~); anything else is a local path."""
    return name.count("/") == 1 and not name.startswith(("/", ".", "~")) and not name.endswith("/")


def cached_snapshot(repo_id: str):
    """The local snapshot dir of ``repo_id`` in the HF cache (holding config.json), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id
        return None
    return Path(found).parent if isinstance(found, str) else None


def locate_model_dir(name: str, label: str) -> Path:
    """``name`` as a local directory: itself, or its snapshot in the local HF cache when it
    is a hub id; ``label`` (e.g. ``--llm``) starts the error message."""
    path = Path(os.path.expanduser(str(name)))
    if path.is_dir():
        return path
    if path.exists():
        raise ModelPathError(f"{label} {name}: is a file, not a checkpoint directory")
    snapshot = cached_snapshot(str(name)) if is_hub_id(str(name)) else None
    if snapshot is None:
        from huggingface_hub import constants

        cache = constants.HF_HUB_CACHE
        raise ModelPathError(
            f"{label} {name}: no such directory"
            + (f", and not in the local Hugging Face cache ({cache}; nothing is downloaded)"
               if is_hub_id(str(name)) else ""))
    return snapshot


def resolve_model_dir(name: str, kind: str) -> Path:
    """The local directory to load ``name`` from (see the module docstring for what is
    accepted); ``kind`` is speech_encoder | whisper (Whisper checkpoints) or llm."""
    option = OPTIONS[kind]
    path = locate_model_dir(name, option)
    config = path / "config.json"
    if not config.is_file():
        raise ModelPathError(f"{option} {name}: no config.json in {path} (not a transformers checkpoint dir)")
    if kind in ("speech_encoder", "whisper"):
        try:
            model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        except (ValueError, UnicodeDecodeError) as e:
            raise ModelPathError(f"{option} {name}: {config} is not valid JSON ({e})") from None
        if model_type != "whisper":
            raise ModelPathError(f"{option} {name}: {config} describes a {model_type!r} model, not Whisper")
    if kind == "llm" and not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise ModelPathError(f"{option} {name}: no tokenizer in {path} (none of {', '.join(TOKENIZER_FILES)})")
    return path


def check_model_path(name: str, kind: str) -> List[str]:
    """[] when ``name`` is usable as ``kind``, else the one-line problem."""
    try:
        resolve_model_dir(name, kind)
    except ModelPathError as e:
        return [str(e)]
    return []

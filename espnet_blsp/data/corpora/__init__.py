"""Stage 1: corpus layouts -> Kaldi data dirs, one ``prepare_<corpus>`` per corpus.

    from espnet_blsp.data.corpora import prepare
    prepare("librispeech", "/data/LibriSpeech", "data/test_clean", subset="test-clean")

Every preparer has the signature ``prepare_<corpus>(corpus_dir, out_dir, subset, ...)``,
skips ``out_dir`` when ``out_dir/.done`` exists, raises FileNotFoundError for a missing
corpus dir, excludes bad utterances with a reason in ``out_dir/excluded.txt`` and writes
the files listed in ``espnet_blsp.data.corpora.common``. The layout each one expects
is in its module docstring.
"""

import inspect
from pathlib import Path
from typing import Callable, Dict

from espnet_blsp.data.corpora.commonvoice import prepare_commonvoice
from espnet_blsp.data.corpora.covost2 import prepare_covost2
from espnet_blsp.data.corpora.fsc import prepare_fsc
from espnet_blsp.data.corpora.gigaspeech import prepare_gigaspeech
from espnet_blsp.data.corpora.kaldi import prepare_kaldi
from espnet_blsp.data.corpora.librispeech import prepare_librispeech
from espnet_blsp.data.corpora.mustc import prepare_mustc
from espnet_blsp.data.corpora.slue_voxceleb import prepare_slue_voxceleb
from espnet_blsp.data.corpora.snips import prepare_snips
from espnet_blsp.data.corpora.tedlium import prepare_tedlium3

CORPORA: Dict[str, Callable[..., Path]] = {
    "librispeech": prepare_librispeech,
    "gigaspeech": prepare_gigaspeech,
    "commonvoice": prepare_commonvoice,
    "tedlium3": prepare_tedlium3,
    "covost2": prepare_covost2,
    "mustc": prepare_mustc,
    "snips": prepare_snips,
    "fsc": prepare_fsc,
    "slue_voxceleb": prepare_slue_voxceleb,
    "kaldi": prepare_kaldi,
}


def corpus_options(corpus: str):
    """Names of the options (beyond corpus_dir, out_dir) that ``corpus`` takes."""
    if corpus not in CORPORA:
        raise ValueError(f"unknown corpus {corpus!r}; choose from {', '.join(sorted(CORPORA))}")
    return [p for p in inspect.signature(CORPORA[corpus]).parameters if p not in ("corpus_dir", "out_dir")]


def prepare(corpus: str, corpus_dir, out_dir, **options) -> Path:
    """Run the preparer registered as ``corpus``; options it does not take are an error
    unless empty (None or "")."""
    accepted = corpus_options(corpus)
    unused = sorted(k for k, v in options.items() if k not in accepted and v not in (None, ""))
    if unused:
        raise ValueError(f"corpus {corpus!r} does not take {unused}; it takes {accepted}")
    kwargs = {k: v for k, v in options.items() if k in accepted and v not in (None, "")}
    params = inspect.signature(CORPORA[corpus]).parameters
    lost = [k for k in accepted if params[k].default is inspect.Parameter.empty and k not in kwargs]
    if lost:
        raise ValueError(f"corpus {corpus!r} needs {lost} (e.g. --{lost[0]})")
    return CORPORA[corpus](corpus_dir, out_dir, **kwargs)

"""espnet_blsp: BLSP and BLSP-KD (speech -> frozen instruction-following LLM) as an ESPnet2 task.

``espnet_blsp.load(exp_dir)`` returns a model to talk to (:mod:`espnet_blsp.api`); it is
imported on first use, so ``import espnet_blsp`` stays light (no torch, no transformers).
"""

from espnet_blsp.utils import lifeline as _lifeline

__version__ = "0.1.0"
# A job run.sh started exits when run.sh is gone (utils/run.pl gives jobs sessions of their
# own, out of reach of a kill of run.sh). It starts here, on the first import of the package,
# so that it already watches during the seconds of torch / transformers imports; it is off
# unless run.sh exported BLSP_LIFELINE.
_lifeline.start()

__all__ = ["load", "SpeechChat"]


def __getattr__(name):
    if name in __all__:
        from espnet_blsp import api

        return getattr(api, name)
    raise AttributeError(f"module 'espnet_blsp' has no attribute {name!r}")

"""espnet_blsp: BLSP and BLSP-KD (speech -> frozen instruction-following LLM) as an ESPnet2 task.

``espnet_blsp.load(exp_dir)`` returns a model to talk to (:mod:`espnet_blsp.api`); it is
imported on first use, so ``import espnet_blsp`` stays light (no torch, no transformers).
"""

__version__ = "0.1.0"
__all__ = ["load", "SpeechChat"]


def __getattr__(name):
    if name in __all__:
        from espnet_blsp import api

        return getattr(api, name)
    raise AttributeError(f"module 'espnet_blsp' has no attribute {name!r}")

"""espnet_blsp: BLSP and BLSP-KD (speech -> frozen instruction-following LLM) as an ESPnet2 task."""

__version__ = "0.1.0"

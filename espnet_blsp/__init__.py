"""espnet_blsp: BLSP and BLSP-KD (speech -> frozen instruction-following LLM) as an ESPnet2 task."""

from espnet_blsp.utils import lifeline as _lifeline

__version__ = "0.1.0"

# A job run.sh started exits when run.sh is gone (utils/run.pl gives jobs sessions of their
# own, out of reach of a kill of run.sh). It starts here, on the first import of the package,
# so that it already watches during the seconds of torch / transformers imports; it is off
# unless run.sh exported BLSP_LIFELINE.
_lifeline.start()

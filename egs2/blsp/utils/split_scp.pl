#!/usr/bin/env bash
# ESPnet/Kaldi name for utils/split_scp.py (same arguments): split an scp into N parts.
#   utils/split_scp.pl [--utt2spk=data/x/utt2spk] data/x/wav.scp out.1.scp ... out.N.scp
exec python3 "$(dirname "$(readlink -f "$0")")/split_scp.py" "$@"

#!/bin/bash
# run in egs2/blsp of a trained mini run (EXP, default exp/train_blsp); the record of the 2026-12-03 diagnostic, not a recipe stage
set -e
exp=${EXP:-exp/train_blsp}
python experiments_cpu_2026-12-03/make_diag_sets.py
sets="lv_joe lv_slt lv_rms test_slt test_rms test_awb"
dumps=(); wavs=()
for s in $sets; do
  python local/data_prep.py --corpus kaldi --src diag/data/$s --dst data/$s
  [ -f dump/$s/feats.scp ] || { python -m espnet_blsp.bin.dump_feats --data_dir data/$s --out_dir dump/$s --speech_encoder assets/whisper-base --nj 1 --job 1 --dump_encoder_output && python -m espnet_blsp.bin.dump_feats --data_dir data/$s --out_dir dump/$s --nj 1 --merge; }
  dumps+=(dump/$s); wavs+=(data/$s)
done
opts=$(python local/read_config.py conf/mini/decode_cpu.yaml --as_args)
python -m espnet_blsp.bin.blsp_inference --mode speech --exp_dir $exp --data_dir "${dumps[@]}" --task asr --out_dir $exp/diag/decode_{task}_{dset} --device cpu $opts
python -m espnet_blsp.bin.blsp_inference --mode whisper --exp_dir $exp --data_dir "${dumps[@]}" --task asr --out_dir $exp/diag/whisper/decode_{task}_{dset} --whisper assets/whisper-base --wav_data_dir "${wavs[@]}" --device cpu $opts
python local/make_results.py --exp $exp --system "diag=$exp/diag" --system "diag whisper=$exp/diag/whisper" --score --data_root data --dump_root dump --tasks asr --test_sets "$sets" --out $exp/RESULTS_diag.md

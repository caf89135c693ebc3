#!/usr/bin/env bash
# BLSP / BLSP-KD recipe: speech input for a frozen instruction-following LLM.
#
#   ./run.sh                                  # offline mini default, stages 0-6, CPU
#   ./run.sh --stage 1 --stop_stage 6         # skip asset preparation
#   ./run.sh --adapter cformer                # BLSP-KD (CFormer + KD losses)
#   ./run.sh --corpus librispeech --corpus_dir /data/LibriSpeech \
#       --train_set train_960 --valid_set dev_clean --test_sets "test_clean test_other" \
#       --speech_encoder openai/whisper-small --llm /models/llama-2-7b-alpaca --ngpu 8
#
# Stages: 0 offline assets (mini only)  1 data prep  2 feature dumping
#         3 teacher generation  4 training  5 decoding  6 scoring
set -euo pipefail

log() {
    local fname=${BASH_SOURCE[1]##*/}
    echo -e "$(date '+%Y-%m-%dT%H:%M:%S') (${fname}:${BASH_LINENO[0]}:${FUNCNAME[1]}) $*"
}
# keep earlier logs, as ESPnet's launch.py does: x.log -> x.1.log, x.1.log -> x.2.log, ...
rotate_log() {
    local stem=${1%.log} i=1
    [ -e "$1" ] || return 0
    while [ -e "${stem}.${i}.log" ]; do i=$((i + 1)); done
    for ((; i > 1; i--)); do mv "${stem}.$((i - 1)).log" "${stem}.${i}.log"; done
    mv "$1" "${stem}.1.log"
}
# set -e stops at the first failing command; say where, instead of exiting silently
trap 'rc=$?; echo "$(date "+%Y-%m-%dT%H:%M:%S") (run.sh:${LINENO}) failed (exit ${rc}): ${BASH_COMMAND}" >&2' ERR

# >>> options
stage=0                 # first stage to run
stop_stage=6            # last stage to run
corpus=mini             # mini | librispeech | gigaspeech | commonvoice | tedlium3 | covost2 | mustc | snips | fsc | slue_voxceleb | kaldi
corpus_dir=             # corpus root (not needed for mini)
train_set=mini_train    # training set name (data/<name>)
valid_set=mini_dev      # validation set name
test_sets="mini_test real_librivox real_cards"  # test set names
adapter=cnn             # cnn (BLSP) | cformer (BLSP-KD); picks the default --train_config
train_config=           # training config (default: conf/<mini/>train_blsp.yaml or _kd...yaml by --adapter)
pretrain_config=        # a config trained first on the transcripts alone (e.g. conf/mini/train_adapter_ctc.yaml) -> exp/<tag>/pretrain; its best checkpoint initialises the training
pretrain_args=          # extra arguments for the pretraining's blsp_train, e.g. "--max_epoch 3" (replaces the preset's)
decode_config=          # batch_size, beam_size, max_new_tokens (default: conf/decode.yaml)
speech_encoder=         # Whisper dir, or a hub id in the local HF cache (default: the mini asset whisper-base)
llm=                    # causal-LM dir with tokenizer, or a cached hub id (default: the mini asset SmolLM2-135M-Instruct)
ngpu=0                  # GPUs for training/decoding (0: CPU); >1 runs DDP
nj=2                    # parallel jobs for synthesis (stage 0), dumping and teacher generation
inference_tasks="asr continuation"  # asr | continuation | st | snips | fsc | slue | qa
st_lang=de              # target language of the st task
rp_ratio=               # repetition:continuation mix, e.g. 1:9 (default: from the config)
tag=                    # experiment name (default: config file name)
baselines="text whisper untrained"  # Text+LLM, Whisper+LLM and untrained-adapter floor
analysis=false          # true: representation analysis + ASR probe on the first test set after decoding (-> exp/<tag>/analysis)
analysis_args=          # extra arguments for bin/analyze, e.g. "--compare ASR-pretraining=exp/train_asr_pretrain"
learning_curve=         # true: validation repeat WER / Self-BLEU of every epoch's checkpoint, plotted (default false)
curve_utts=32           # validation utterances decoded per learning-curve point
dump_encoder_output=    # true: dump frozen encoder outputs instead of log-mel (frozen encoder only; default false)
teacher_batch_size=32   # batch size of teacher generation
max_new_tokens=         # teacher generation length (default: 64 as in BLSP)
train_subset=           # train utterances used for teacher generation and training (default: all)
valid_subset=           # valid utterances used for validation (default: all)
train_args=             # extra arguments for blsp_train, e.g. "--max_epoch 2" (replaces the preset's)
preset=auto             # fills the options left empty: auto (mini: cpu, or gpu with --ngpu >= 1; else none) | none | NAME (conf/mini/preset_NAME.yaml) | a YAML file
assets_dir=assets       # stage 0 output: converted Whisper and SmolLM2 checkpoints
mini_dir=               # stage 0 output: the synthesized mini corpus (default: mini_<mini_num_train>[_llm<N>][_fortune<N>][_flite<share>])
mini_whisper=base       # base | tiny.en
mini_num_train=         # mini corpus sizes (default train: 2000; the gpu preset: 20000)
mini_num_llm_train=     # training sentences written by the LLM, added to the mini corpus (default 0)
mini_num_fortune_train= # training sentences of Debian's fortunes package, added to the mini corpus (default 0)
mini_flite_share=       # share of the training utterances spoken by flite's voices, not piper's (default 0)
mini_num_dev=100
mini_num_test=100
# <<< options

help_message="Usage: $0 [options]; every option is --name value (see the list below)."
run_cmd="$0 $*"
. ./path.sh
. ./cmd.sh
. utils/parse_options.sh

# a preset (one YAML file of option: value) fills every option still empty here
if [ "${preset}" = auto ]; then
    preset=$([ "${corpus}" = mini ] && { [ "${ngpu}" -gt 0 ] && echo gpu || echo cpu; } || echo none)
fi
if [ "${preset}" != none ]; then
    preset_file=$([ -f "${preset}" ] && echo "${preset}" || echo "conf/mini/preset_${preset}.yaml")
    [ -f "${preset_file}" ] || { log "no such preset: ${preset} (known: $(cd conf/mini && LC_ALL=C ls preset_*.yaml | sed 's/preset_\(.*\).yaml/\1/' | xargs))"; exit 1; }
    preset_lines=$(python local/read_config.py "${preset_file}" --as_shell)
    run_opts=" $(sed -n '/^# >>> options/,/^# <<< options/s/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/\1/p' "$0" | xargs) "
    while IFS= read -r line; do
        key=${line%%=*}
        [[ ${run_opts} == *" ${key} "* ]] || { log "${preset_file}: '${key}' is not a run.sh option (see --help)"; exit 1; }
        [ -n "${!key}" ] || eval "${line}"
    done <<< "${preset_lines}"
fi
mini_num_train=${mini_num_train:-2000}
mini_num_llm_train=${mini_num_llm_train:-0}
mini_num_fortune_train=${mini_num_fortune_train:-0}
mini_flite_share=${mini_flite_share:-0}
mini_dir=${mini_dir:-mini_${mini_num_train}$([ "${mini_num_llm_train}" -gt 0 ] && echo "_llm${mini_num_llm_train}" || true)$([ "${mini_num_fortune_train}" -gt 0 ] && echo "_fortune${mini_num_fortune_train}" || true)$([ "${mini_flite_share}" != 0 ] && echo "_flite${mini_flite_share}" || true)}
max_new_tokens=${max_new_tokens:-64}
train_subset=${train_subset:-0}
valid_subset=${valid_subset:-0}
dump_encoder_output=${dump_encoder_output:-false}
case ${dump_encoder_output} in true|false) ;; *) log "--dump_encoder_output takes true or false, got '${dump_encoder_output}'"; exit 1 ;; esac
decode_config=${decode_config:-conf/decode.yaml}
learning_curve=${learning_curve:-false}
if [ -z "${speech_encoder}" ] || [ -z "${llm}" ]; then
    [ "${corpus}" = mini ] || { log "--speech_encoder and --llm are required for --corpus ${corpus}"; exit 1; }
    speech_encoder=${speech_encoder:-${assets_dir}/whisper-${mini_whisper}}
    llm=${llm:-${assets_dir}/smollm2-135m-instruct}
    use_assets=true
else
    use_assets=false
fi
if [ -z "${train_config}" ]; then
    case $([ "${corpus}" = mini ] && echo mini || echo full):${adapter} in
        mini:cnn) train_config=conf/mini/train_blsp.yaml ;;
        mini:cformer) train_config=conf/mini/train_blsp_kd_ctc.yaml ;;
        full:cnn) train_config=conf/train_blsp.yaml ;;
        full:cformer) train_config=conf/train_blsp_kd5.yaml ;;
        *) log "unknown --adapter ${adapter} (cnn | cformer)"; exit 1 ;;
    esac
fi
[ -f "${train_config}" ] || { log "no such config: ${train_config}"; exit 1; }
# data/ and dump/ of the mini corpus are named by split, not by size: a run on another
# --mini_dir (e.g. --ngpu 1 after the CPU default) would silently reuse the old sets
if [ "${corpus}" = mini ] && [ -f data/.mini_dir ] && [ "$(cat data/.mini_dir)" != "${mini_dir}" ]; then
    log "data/ and dump/ hold the mini corpus of $(cat data/.mini_dir), this run uses ${mini_dir}:"
    log "move data/, dump/ and exp/ aside (e.g. mkdir old && mv data dump exp old/) and run again"
    exit 1
fi
# GPUs this process must see: the local run.pl jobs of stages 2-4, and stage 5 (in-process)
if [ "${ngpu}" -gt 0 ] && [ ${stage} -le 5 ] && [ ${stop_stage} -ge 2 ] && \
        { [[ "${cuda_cmd}" == *run.pl* ]] || [ ${stop_stage} -ge 5 ]; }; then
    visible=$(python -c "import torch; print(torch.cuda.device_count())")
    if [ "${visible}" -lt "${ngpu}" ]; then
        log "--ngpu ${ngpu}, but torch sees ${visible} CUDA GPU(s) here (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}); use --ngpu ${visible}"
        exit 1
    fi
fi
tag=${tag:-$(basename "${train_config}" .yaml)}
expdir=exp/${tag}
# every key of the configs must be one that is read: a typo stops the run here, one line each
# (checked again only when a config or the package changed: the mark)
if [ ${stage} -le 5 ] && [ ${stop_stage} -ge ${stage} ]; then
    [ -z "${pretrain_config}" ] || [ -f "${pretrain_config}" ] || { log "no such config: ${pretrain_config} (--pretrain_config)"; exit 1; }
    python -m espnet_blsp.bin.check_config --train_config "${train_config}" --decode_config "${decode_config}" \
        ${pretrain_config:+--pretrain_config "${pretrain_config}"} --mark "${expdir}/.config_checked" || exit 1
fi
log "Experiment ${expdir}: config ${train_config}${pretrain_config:+ (after ${pretrain_config})}, speech encoder ${speech_encoder}, LLM ${llm}, ngpu ${ngpu}, preset ${preset}"
use_responses=$(python local/read_config.py "${train_config}" use_responses true)
rp_ratio=${rp_ratio:-$(python local/read_config.py "${train_config}" rp_ratio 0)}
prompt_template=$(python local/read_config.py "${train_config}" llm_conf.prompt_template blsp)
llm_dtype=$(python local/read_config.py "${train_config}" llm_conf.dtype auto)
# auto -> bfloat16 where this machine runs it natively (a GPU; a CPU with AVX512-BF16 or AMX), else float32
llm_dtype=$(python -c "import sys; from espnet_blsp.utils.dtype import resolve_dtype_name as r; print(r(*sys.argv[1:]))" \
    "${llm_dtype}" "$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)") || exit 1
train_dir=dump/${train_set}; valid_dir=dump/${valid_set}
if [ "${use_responses}" = true ]; then
    suffix=_cw$([ "${rp_ratio}" != 0 ] && echo "_rp${rp_ratio/:/-}" || true)$([ "${train_subset}" -gt 0 ] && echo "_n${train_subset}" || true)
    train_dir=dump/${train_set}${suffix}; valid_dir=dump/${valid_set}_cw$([ "${valid_subset}" -gt 0 ] && echo "_n${valid_subset}" || true)
fi
device=$([ "${ngpu}" -gt 0 ] && echo cuda || echo cpu)
mkdir -p "${expdir}"
# the jobs (run.pl starts each in a session of its own) exit when this process is gone
BLSP_LIFELINE="$(hostname):$$:$(sed 's/.*) //' /proc/$$/stat 2>/dev/null | cut -d' ' -f20)"
export BLSP_LIFELINE
# one run.sh at a time per experiment dir, and per data/ + dump/ while stages 0-3 write them
take_lock() {  # <fd> <lock file>: flock held until run.sh exits or closes the fd
    eval "exec $1>>\"$2\""
    if ! flock -n "$1"; then
        log "$2 is held by another run.sh ($(cat "$2" 2>/dev/null)); wait for it to finish or stop it, then run again"
        exit 1
    fi
    echo "pid $$: ${run_cmd}" > "$2"
}
if command -v flock > /dev/null; then
    take_lock 9 "${expdir}/.lock"
    if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 0 ]; then mkdir -p data && take_lock 8 data/.lock; fi
else
    log "flock not found: no lock against a second run.sh on ${expdir}"
fi
echo "${run_cmd}" >> "${expdir}/run.sh.cmd"

if [ ${stage} -le 0 ] && [ ${stop_stage} -ge 0 ]; then
    if [ "${use_assets}" = true ]; then
        log "Stage 0: offline assets -> ${assets_dir}/, mini corpus -> ${mini_dir}/"
        python -m espnet_blsp.bin.prepare_assets --out_dir "${assets_dir}" --whisper "${mini_whisper}"
        [ "${corpus}" != mini ] || python local/mini/make_corpus.py --out_dir "${mini_dir}" \
            --num_train ${mini_num_train} --num_dev ${mini_num_dev} --num_test ${mini_num_test} --nj ${nj} \
            --num_llm_train ${mini_num_llm_train} --llm "${llm}" \
            --num_fortune_train ${mini_num_fortune_train} --flite_share ${mini_flite_share}
    else
        log "Stage 0: skipped (--speech_encoder and --llm given)"
    fi
fi

# the models must load before any stage needs them (stage 0 has made the mini assets by now)
if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 1 ] && [ ${stop_stage} -ge ${stage} ]; then
    python -m espnet_blsp.bin.check_config --speech_encoder "${speech_encoder}" --llm "${llm}" || exit 1
fi

if [ ${stage} -le 1 ] && [ ${stop_stage} -ge 1 ]; then
    if [ "${corpus}" = mini ]; then mkdir -p data && echo "${mini_dir}" > data/.mini_dir; fi
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        # data/<set>/.done records its source; a changed source (a corpus fix) prepares it again
        case ${corpus} in
            mini) src_mark=(--files "${mini_dir}/data/${dset}") ;;
            kaldi) src_mark=(--files "${corpus_dir}/${dset}") ;;
            *) src_mark=(--tree "${corpus_dir}" subset="${dset}" st_lang="${st_lang}") ;;
        esac
        mark=(corpus="${corpus}" "${src_mark[@]}")
        if [ -f "data/${dset}/.done" ] && ! why=$(python local/stage_mark.py check "data/${dset}/.done" "${mark[@]}"); then
            log "Stage 1: data/${dset} is stale (${why}): preparing it again"
            rm -rf "data/${dset}"
        fi
        log "Stage 1: data prep: ${corpus} ${dset} -> data/${dset}"
        if [ "${corpus}" = mini ]; then
            python local/data_prep.py --corpus kaldi --src "${mini_dir}/data/${dset}" --dst "data/${dset}"
        else
            lang_opt=$(case ${corpus} in covost2|mustc) echo "--lang ${st_lang}";; *) true;; esac)
            # shellcheck disable=SC2086
            python local/data_prep.py --corpus "${corpus}" --src "${corpus_dir}" --dst "data/${dset}" --subset "${dset}" ${lang_opt}
        fi
        python local/stage_mark.py write "data/${dset}/.done" "${mark[@]}"
    done
fi

if [ ${stage} -le 2 ] && [ ${stop_stage} -ge 2 ]; then
    opt=$([ "${dump_encoder_output}" = true ] && echo --dump_encoder_output || true)
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        # dump/<set>/.done records its inputs: other features, another encoder or changed data
        # dump the set again (and drop its stage-3 dirs); an ark cut short redoes its broken entries
        mark=(encoder_output="${dump_encoder_output}" speech_encoder="${speech_encoder}" --files "data/${dset}")
        if [ -f "dump/${dset}/.done" ]; then
            if ! why=$(python local/stage_mark.py check "dump/${dset}/.done" "${mark[@]}"); then
                log "Stage 2: dump/${dset} is stale (${why}): dumping it again"
                rm -rf "dump/${dset}" "dump/${dset}"_cw*
            elif python -m espnet_blsp.bin.dump_feats --verify --out_dir "dump/${dset}" --nj ${nj}; then
                log "Stage 2: dump/${dset} done, skipped"; continue
            else
                log "Stage 2: dump/${dset} has broken features (above): dumping those utterances again"
            fi
        fi
        log "Stage 2: feature dumping: data/${dset} -> dump/${dset}/feats.scp (${nj} jobs)"
        mkdir -p "dump/${dset}/log"
        ${train_cmd} JOB=1:${nj} "dump/${dset}/log/dump.JOB.log" \
            python -m espnet_blsp.bin.dump_feats --data_dir "data/${dset}" --out_dir "dump/${dset}" \
                --speech_encoder "${speech_encoder}" --nj ${nj} --job JOB ${opt}
        python -m espnet_blsp.bin.dump_feats --data_dir "data/${dset}" --out_dir "dump/${dset}" --nj ${nj} --merge
        python local/stage_mark.py write "dump/${dset}/.done" "${mark[@]}"
    done
fi

if [ ${stage} -le 3 ] && [ ${stop_stage} -ge 3 ] && [ "${use_responses}" = true ]; then
    for dset in ${train_set} ${valid_set}; do
        out=${valid_dir}; n=${valid_subset}
        [ "${dset}" = "${train_set}" ] && { out=${train_dir}; n=${train_subset}; }
        rp=$([ "${dset}" = "${train_set}" ] && echo "${rp_ratio}" || echo 0)
        # the continuations belong to gen_mark, the mixed set to mark: a change redoes what depends on it
        gen_mark=(llm="${llm}" max_new_tokens="${max_new_tokens}" prompt_template="${prompt_template}"
                  dtype="${llm_dtype}" --files "dump/${dset}/text")
        mark=("${gen_mark[@]}" rp_ratio="${rp}" max_utts="${n}" --files "dump/${dset}/feats.scp")
        if [ -f "${out}/.done" ]; then
            why=$(python local/stage_mark.py check "${out}/.done" "${mark[@]}") && { log "Stage 3: ${out} done, skipped"; continue; }
            log "Stage 3: ${out} is stale (${why}): making it again"
            rm -rf "${out}"
        fi
        if ! why=$(python local/stage_mark.py check "dump/${dset}/split${nj}/teacher.done" "${gen_mark[@]}") && \
                compgen -G "dump/${dset}/split${nj}/continuation_ids.*" > /dev/null; then
            log "Stage 3: the continuations in dump/${dset}/split${nj} are stale (${why}): generating them again"
            rm -f "dump/${dset}/split${nj}"/continuation_ids.*
        fi
        # continuations made by an earlier run with another --nj (same mark) are copied, not redone
        reuse=()
        for other in dump/${dset}/split*/teacher.done; do
            [ -f "${other}" ] && [ "${other}" != "dump/${dset}/split${nj}/teacher.done" ] || continue
            python local/stage_mark.py check "${other}" "${gen_mark[@]}" > /dev/null || continue
            for f in "$(dirname "${other}")"/continuation_ids.*; do [ ! -f "${f}" ] || reuse+=("${f}"); done
        done
        log "Stage 3: teacher generation: dump/${dset}/text -> ${out} (rp_ratio ${rp}$([ ${#reuse[@]} -eq 0 ] || echo "; reusing ${#reuse[@]} files of another --nj"))"
        mkdir -p "dump/${dset}/split${nj}" "dump/${dset}/log"
        python local/stage_mark.py write "dump/${dset}/split${nj}/teacher.done" "${gen_mark[@]}"
        ${cuda_cmd} --gpu $([ "${ngpu}" -gt 0 ] && echo 1 || echo 0) JOB=1:${nj} "dump/${dset}/log/teacher.JOB.log" \
            python -m espnet_blsp.bin.generate_teacher --llm "${llm}" --text "dump/${dset}/text" \
                --out "dump/${dset}/split${nj}/continuation_ids.JOB" --nj ${nj} --job JOB \
                --batch_size ${teacher_batch_size} --max_new_tokens ${max_new_tokens} --device ${device} \
                --prompt_template ${prompt_template} --dtype ${llm_dtype} --max_utts ${n} --reuse "${reuse[@]}"
        python -m espnet_blsp.bin.generate_teacher --mix --llm "${llm}" --prompt_template ${prompt_template} \
            --dump_dir "dump/${dset}" --out_dir "${out}" --nj ${nj} \
            --rp_ratio "${rp}" --max_utts ${n}
        python local/stage_mark.py write "${out}/.done" "${mark[@]}"
    done
fi
exec 8>&-  # data/ and dump/ are written: release data/.lock

# stage 4 for one config: train <label> <config> <exp dir> <train dump> <valid dump> <use_responses> [blsp_train args]
train() {
    local label=$1 config=$2 dir=$3 tr_dir=$4 va_dir=$5 responses=$6 part d
    shift 6
    local data_opts=() model_opts=(--config "${config}" --speech_encoder_conf "model_name_or_path=${speech_encoder}"
                                   --llm_conf "model_name_or_path=${llm}")
    for part in train valid; do
        d=$([ ${part} = train ] && echo "${tr_dir}" || echo "${va_dir}")
        data_opts+=(--${part}_data_path_and_name_and_type "${d}/feats.scp,speech,kaldi_ark"
                    --${part}_data_path_and_name_and_type "${d}/text,text,text")
        [ "${responses}" = false ] || data_opts+=(
                    --${part}_data_path_and_name_and_type "${d}/response_ids,response_ids,text_int"
                    --${part}_data_path_and_name_and_type "${d}/instruction,instruction,text")
    done
    [ "${dump_encoder_output}" = false ] || model_opts+=(--model_conf precomputed_encoder=true)
    # the shapes belong to these dump dirs and what they were made from (their files, and the
    # stage-2 mark of their features): recollect when --train_subset etc. picked others, or a
    # stage redid them
    local mark=(train_dir="${tr_dir}" valid_dir="${va_dir}" --files "${tr_dir}" --files "${va_dir}") why
    for d in dump/${train_set} dump/${valid_set}; do [ ! -f "${d}/.done" ] || mark+=(--files "${d}/.done"); done
    if ! why=$(python local/stage_mark.py check "${dir}/stats/.done" "${mark[@]}" 2>/dev/null); then
        [ ! -f "${dir}/stats/.done" ] || log "Stage 4a: ${dir}/stats is stale (${why}): collecting the shapes again"
        log "Stage 4a: collect_stats: ${tr_dir} -> ${dir}/stats"
        ${train_cmd} "${dir}/stats/collect_stats.log" \
            python -m espnet_blsp.bin.blsp_train --collect_stats true --ngpu 0 "${model_opts[@]}" "${data_opts[@]}" \
                --model_conf extract_feats_in_collect_stats=false --output_dir "${dir}/stats" --num_workers 0
        python local/stage_mark.py write "${dir}/stats/.done" "${mark[@]}"
    fi
    log "Stage 4b: ${label}: ${config} -> ${dir} (ngpu ${ngpu})"
    echo "python -m espnet_blsp.bin.blsp_train ${model_opts[*]} ${data_opts[*]} $*" > "${dir}/train.cmd"
    rotate_log "${dir}/train.log"  # keep the log of an earlier attempt
    ${cuda_cmd} --gpu ${ngpu} "${dir}/train.log" \
        python -m espnet_blsp.bin.blsp_train "${model_opts[@]}" "${data_opts[@]}" \
            --train_shape_file "${dir}/stats/train/speech_shape" \
            --valid_shape_file "${dir}/stats/valid/speech_shape" \
            --ngpu ${ngpu} --multiprocessing_distributed $([ ${ngpu} -gt 1 ] && echo true || echo false) \
            --resume true --output_dir "${dir}" "$@"
}

if [ ${stage} -le 4 ] && [ ${stop_stage} -ge 4 ]; then
    init_opts=()
    if [ -n "${pretrain_config}" ]; then
        # on the transcripts alone (dump/<train_set>: every training utterance, no stage 3);
        # .done records the config and arguments, so a finished pretraining is not redone
        pre_dir=${expdir}/pretrain
        pre_mark=(pretrain_args="${pretrain_args}" --files "${pretrain_config}" --files "dump/${train_set}/.done")
        if python local/stage_mark.py check "${pre_dir}/.done" "${pre_mark[@]}" > /dev/null 2>&1; then
            log "Stage 4: pretraining ${pre_dir} done, skipped"
        else
            if [ -f "${expdir}/checkpoint.pth" ]; then
                log "${expdir}/checkpoint.pth is of a training that did not start from this pretraining (${pretrain_config} ${pretrain_args}):"
                log "move it aside (e.g. mkdir ${expdir}/old && mv ${expdir}/*.pth ${expdir}/old/) and run again"
                exit 1
            fi
            mkdir -p "${pre_dir}"
            # shellcheck disable=SC2086
            train pretraining "${pretrain_config}" "${pre_dir}" "dump/${train_set}" "dump/${valid_set}" false ${pretrain_args}
            [ -e "${pre_dir}/valid.loss.best.pth" ] || { log "the pretraining wrote no ${pre_dir}/valid.loss.best.pth (see ${pre_dir}/train.log)"; exit 1; }
            python local/stage_mark.py write "${pre_dir}/.done" "${pre_mark[@]}"
        fi
        # parameters of the pretraining's loss alone (the CTC blank of a training without CTC)
        # are dropped with a warning in train.log; check_config has made sure the adapters fit
        init_opts=(--init_param "${pre_dir}/valid.loss.best.pth" --ignore_init_mismatch true)
    fi
    # shellcheck disable=SC2086
    train training "${train_config}" "${expdir}" "${train_dir}" "${valid_dir}" "${use_responses}" "${init_opts[@]}" ${train_args}
fi

if [ ${stage} -le 5 ] && [ ${stop_stage} -ge 5 ]; then
    decode_opts=$(python local/read_config.py "${decode_config}" --as_args)
    lang_opt=$([[ " ${inference_tasks} " == *" st "* ]] && echo "--target_lang ${st_lang}" || true)
    dump_dirs=(); wav_dirs=()
    for dset in ${test_sets}; do dump_dirs+=("dump/${dset}"); wav_dirs+=("data/${dset}"); done
    # one process per mode decodes every task x test set (models load once); resumable per utterance
    log "Stage 5: decoding: ${inference_tasks} on ${test_sets} -> ${expdir}/decode_<task>_<set>"
    # shellcheck disable=SC2086
    python -m espnet_blsp.bin.blsp_inference --mode speech --exp_dir "${expdir}" \
        --data_dir "${dump_dirs[@]}" --task ${inference_tasks} --out_dir "${expdir}/decode_{task}_{dset}" \
        --device ${device} ${decode_opts} ${lang_opt}
    for b in ${baselines}; do
        bdir=${expdir}/baselines/$(case $b in text) echo text_llm;; whisper) echo whisper_llm;; untrained) echo untrained;; *) log "unknown baseline $b"; exit 1;; esac)
        log "Stage 5: baseline ${b}: ${inference_tasks} on ${test_sets} -> ${bdir}/decode_<task>_<set>"
        # shellcheck disable=SC2086
        python -m espnet_blsp.bin.blsp_inference --mode "${b}" --exp_dir "${expdir}" \
            --data_dir "${dump_dirs[@]}" --task ${inference_tasks} --out_dir "${bdir}/decode_{task}_{dset}" \
            --whisper "${speech_encoder}" --wav_data_dir "${wav_dirs[@]}" --device ${device} \
            ${decode_opts} ${lang_opt}
    done
    if [ "${learning_curve}" = true ]; then
        log "Stage 5: learning curve: every epoch of ${expdir} on ${curve_utts} utterances of ${valid_dir} -> ${expdir}/curves/"
        # shellcheck disable=SC2086
        python -m espnet_blsp.bin.learning_curve --exp_dir "${expdir}" --data_dir "${valid_dir}" \
            --ref_text "data/${valid_set}/text" --num_utts ${curve_utts} --device ${device} ${decode_opts}
    fi
    if [ "${analysis}" = true ]; then
        first_test=${test_sets%% *}
        probe_config=conf/$([ "${corpus}" = mini ] && echo mini/ || true)asr_probe.yaml
        log "Stage 5: analysis: ${expdir} on dump/${first_test} -> ${expdir}/analysis/ (representations; ASR probe trained on dump/${train_set})"
        # shellcheck disable=SC2086
        python -m espnet_blsp.bin.analyze --exp_dir "${expdir}" --data_dir "dump/${first_test}" --device ${device} ${analysis_args}
        # shellcheck disable=SC2086
        python -m espnet_blsp.bin.asr_probe --exp_dir "${expdir}" --config "${probe_config}" --train_dir "dump/${train_set}" \
            --test_dir "dump/${first_test}" --ref_text "data/${first_test}/text" --device ${device} ${decode_opts}
    fi
fi

if [ ${stage} -le 6 ] && [ ${stop_stage} -ge 6 ]; then
    log "Stage 6: scoring: ${expdir}/{,baselines/*/}decode_*/text -> score/score.json, ${expdir}/RESULTS.md"
    python local/make_results.py --exp "${expdir}" --score --data_root data --dump_root dump --st_lang "${st_lang}" \
        --tasks "${inference_tasks}" --test_sets "${test_sets}" --out "${expdir}/RESULTS.md"
    cat "${expdir}/RESULTS.md"
fi
log "Successfully finished. [elapsed=${SECONDS}s]"

# How jobs run. run.pl runs them on this machine; slurm.pl submits them with sbatch.
#   train_cmd: CPU jobs (dumping, scoring); cuda_cmd: GPU jobs (teacher generation, training)
# Options understood by both: --gpu N --mem 16G --num_threads N
cmd_backend=${cmd_backend:-local}

case ${cmd_backend} in
    local)
        export train_cmd="utils/run.pl"
        export cuda_cmd="utils/run.pl"
        export decode_cmd="utils/run.pl"
        ;;
    slurm)
        # Edit the partition/account in utils/slurm.pl's options as your cluster needs.
        export train_cmd="utils/slurm.pl"
        export cuda_cmd="utils/slurm.pl"
        export decode_cmd="utils/slurm.pl"
        ;;
    *)
        echo "$0: unknown cmd_backend ${cmd_backend} (local | slurm)" >&2
        return 1
        ;;
esac

#!/usr/bin/env bash
# Parse --name value options into existing shell variables (sourced by run.sh).
#   --foo-bar v and --foo_bar v both set foo_bar=v; an unknown option is an error.
#   --help prints $help_message and every option between the "# >>> options" and
#   "# <<< options" markers of the calling script, with its default and comment.
# Own implementation in the spirit of Kaldi's utils/parse_options.sh.

__script=${BASH_SOURCE[1]:-$0}
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-Usage: ${__script} [options]}"
            echo "Options (name=default  # meaning):"
            sed -n '/^# >>> options/,/^# <<< options/p' "${__script}" \
                | grep -v '^# [<>]* options' | sed 's/^/  --/'
            exit 0 ;;
        --*)
            __name=${1#--}; __name=${__name//-/_}
            if [[ "${__name}" == *=* ]]; then __value=${__name#*=}; __name=${__name%%=*}; shift
            else
                [ $# -ge 2 ] || { echo "$0: option --${__name} needs a value" >&2; exit 1; }
                __value=$2; shift 2
            fi
            if ! declare -p "${__name}" >/dev/null 2>&1; then
                echo "$0: unknown option --${__name} (see --help)" >&2; exit 1
            fi
            printf -v "${__name}" '%s' "${__value}" ;;
        *) break ;;
    esac
done
unset __name __value __script

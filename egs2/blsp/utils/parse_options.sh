#!/usr/bin/env bash
# Turn "--name value" command-line options into shell variables. Source it from a script
# after its options are defined:
#
#   # >>> options
#   stage=0          # first stage to run
#   test_sets="a b"  # test set names
#   use_lm=false     # a boolean: --use_lm true|false
#   # <<< options
#   help_message="Usage: $0 [options]"
#   . utils/parse_options.sh
#
# - "--foo-bar v", "--foo_bar v" and "--foo-bar=v" all set foo_bar=v. The option must be
#   defined between the "# >>> options" and "# <<< options" lines of the calling script
#   (or, if it has no such block, be an existing shell variable); anything else is an
#   error naming the option.
# - An option whose default is true or false only takes true or false.
# - "--help" (or -h) prints $help_message, then every option of the block with its
#   default and its trailing "# comment", and exits 0.
# - Parsing stops at "--" or at the first argument that is not an option; the rest are
#   left in "$@".
# Own implementation, written for this recipe; the interface follows Kaldi's
# utils/parse_options.sh, which ESPnet recipes use.

__po_script=${BASH_SOURCE[1]:-}
__po_block=
if [ -n "${__po_script}" ] && [ -f "${__po_script}" ]; then
    __po_block=$(sed -n '/^# >>> options/,/^# <<< options/p' "${__po_script}")
fi
# name=value  # comment  (value: words and quoted strings, no unquoted blanks)
__po_re='^([A-Za-z_][A-Za-z0-9_]*)=(("[^"]*"|'"'"'[^'"'"']*'"'"'|[^[:space:]"'"'"'])*)[[:space:]]*(#[[:space:]]?(.*))?$'
__po_names=" "
while IFS= read -r __po_line; do
    if [[ ${__po_line} =~ ${__po_re} ]]; then
        __po_names+="${BASH_REMATCH[1]} "
    fi
done <<< "${__po_block}"

while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h)
            echo "${help_message:-Usage: ${__po_script:-$0} [options]}"
            if [ "${__po_names}" != " " ]; then
                echo "Options (--name value, or --name=value; default  # meaning):"
                while IFS= read -r __po_line; do
                    if [[ ${__po_line} =~ ${__po_re} ]]; then
                        if [ -n "${BASH_REMATCH[5]}" ]; then
                            printf '  --%-30s # %s\n' "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}" "${BASH_REMATCH[5]}"
                        else
                            printf '  --%s\n' "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}"
                        fi
                    fi
                done <<< "${__po_block}"
            fi
            exit 0 ;;
        --)
            shift; break ;;
        --?*)
            __po_name=${1#--}
            if [[ ${__po_name} == *=* ]]; then
                __po_value=${__po_name#*=}; __po_name=${__po_name%%=*}; shift
            else
                if [ $# -lt 2 ]; then
                    echo "${__po_script:-$0}: option --${__po_name} needs a value" >&2; exit 1
                fi
                __po_value=$2; shift 2
            fi
            __po_name=${__po_name//-/_}
            if ! [[ ${__po_name} =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
                echo "${__po_script:-$0}: invalid option --${__po_name}" >&2; exit 1
            fi
            if [ "${__po_names}" != " " ]; then
                [[ ${__po_names} == *" ${__po_name} "* ]] && __po_known=true || __po_known=false
            else
                declare -p "${__po_name}" >/dev/null 2>&1 && __po_known=true || __po_known=false
            fi
            if [ "${__po_known}" != true ]; then
                echo "${__po_script:-$0}: unknown option --${__po_name} (see --help)" >&2; exit 1
            fi
            __po_old=${!__po_name-}
            if { [ "${__po_old}" = true ] || [ "${__po_old}" = false ]; } \
                    && [ "${__po_value}" != true ] && [ "${__po_value}" != false ]; then
                echo "${__po_script:-$0}: option --${__po_name} takes true or false, got '${__po_value}'" >&2; exit 1
            fi
            printf -v "${__po_name}" '%s' "${__po_value}" ;;
        *)
            break ;;
    esac
done
unset __po_script __po_block __po_re __po_names __po_line __po_name __po_value __po_known __po_old

# bash completion for tend                                  -*- shell-script -*-
_tend()
{
    local cur prev words cword
    _init_completion || return
    local commands="run test check import ingest segment simulate status backup"
    if [[ $cword -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi
    case $prev in
        --dir|-d) _filedir -d; return ;;
        --db|--customers|--events) _filedir; return ;;
        --listen|--days|--sample|--start) return ;;
    esac
    local opts="--help --dir --db"
    case ${words[1]} in
        run) opts="$opts --listen" ;;
        test) opts="$opts -v" ;;
        status) opts="$opts --json" ;;
        ingest) opts="$opts --no-process" ;;
        segment) opts="$opts --sample" ;;
        simulate) opts="$opts --days --customers --events --start" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        _filedir
    fi
} && complete -F _tend tend

# bash completion for tend                                  -*- shell-script -*-
_tend()
{
    local cur prev words cword
    _init_completion || return
    local commands="run test check import ingest segment simulate status backup new tasks task customer"
    if [[ $cword -eq 1 ]]; then
        COMPREPLY=($(compgen -W "$commands --help --version" -- "$cur"))
        return
    fi
    case $prev in
        --dir|-d) _filedir -d; return ;;
        --db|--customers|--events|--junit|--coverage) _filedir; return ;;
        -k) return ;;
        --listen|--days|--sample|--start|--assignee|--outcome|--note|--limit|--before|--after) return ;;
        --messages) _filedir; return ;;
        --status) COMPREPLY=($(compgen -W "open done failed cancelled all" -- "$cur")); return ;;
        --log-format) COMPREPLY=($(compgen -W "text json" -- "$cur")); return ;;
        --log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
    esac
    local opts="--help --dir --db --log-format --log-level"
    case ${words[1]} in
        run) opts="$opts --listen" ;;
        test) opts="$opts -v -k --junit --coverage" ;;
        new) [[ $cword -eq 2 ]] && { COMPREPLY=($(compgen -W "journey" -- "$cur")); return; } ;;
        status) opts="$opts --json" ;;
        ingest) opts="$opts --no-process" ;;
        segment) opts="$opts --sample" ;;
        simulate) opts="$opts --days --customers --events --start --messages" ;;
        import) opts="$opts --products" ;;
        tasks) opts="$opts --assignee --status --overdue --after --limit --json" ;;
        task) [[ $cword -eq 3 ]] && { COMPREPLY=($(compgen -W "done failed cancelled" -- "$cur")); return; }
              opts="$opts --outcome --note" ;;
        customer) opts="$opts --limit --before --json" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    else
        _filedir
    fi
} && complete -F _tend tend

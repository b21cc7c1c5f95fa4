# Helpers the launchers share; sourced, not run.

# The calling script's header comment, as its --help.
usage() { awk 'NR > 1 && /^#( |$)/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "$PROG: $*" >&2; exit 2; }

# Prints its arguments as one line of shell: plain words unquoted, others in single quotes.
shell_quote() {
  local out="" arg word
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_@%+=:,./-]+$ ]]; then
      word=$arg
    elif [[ $arg =~ ^(-{0,2}[A-Za-z_][A-Za-z0-9_.-]*=)(.*)$ ]]; then
      word=${BASH_REMATCH[1]}\'${BASH_REMATCH[2]//\'/\'\\\'\'}\'
    else
      word=\'${arg//\'/\'\\\'\'}\'
    fi
    out+="${out:+ }$word"
  done
  printf '%s\n' "$out"
}

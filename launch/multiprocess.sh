#!/usr/bin/env bash
# Runs imagenet_train as N processes on this machine, each with K simulated CPU devices, joined
# by JAX's distributed runtime: a rehearsal of a multi-host run without the hosts.
#
# Usage: launch/multiprocess.sh N [--devices_per_process=K] [--port=P] [--grace=S] [--dry-run] -- COMMAND [FLAGS...]
#
#   N                        number of processes (process ids 0..N-1)
#   --devices_per_process=K  CPU devices per process (default 4): XLA_FLAGS=--xla_force_host_platform_device_count=K
#   --port=P                 coordinator port on 127.0.0.1 (default 12355; give another to run two at once)
#   --grace=S                once a process fails, seconds the others get to stop on their own
#                            (JAX's distributed runtime stops them within --heartbeat_timeout)
#                            before they get SIGTERM, then SIGKILL 10 s later (default 60)
#   --dry-run                print the N commands (shell-quoted, with their environment) instead of running them
#   --help                   show this help
#
# Everything after `--` goes to `python -m imagenet_train` unchanged, command name first; each
# process also gets --coordinator_address=127.0.0.1:P --num_processes=N --process_id=I and the
# environment JAX_PLATFORMS=cpu (XLA_FLAGS is replaced, not extended). Every output line is
# prefixed with `[process I] `. The exit status is 0 when all processes exit 0, otherwise the
# status of the process that failed first, which a final line names. Run it from the repository
# root. Python is $PYTHON (default: .venv/bin/python, made by `make setup`).
#
# Example:
#   launch/multiprocess.sh 2 -- train --config=configs/default.py --workdir=workdirs/mp --config.batch_size=64
set -euo pipefail

PROG=multiprocess.sh
PYTHON=${PYTHON:-.venv/bin/python}
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
KILL_AFTER_TERM=10  # seconds between SIGTERM and SIGKILL



num_processes="" devices=4 port=12355 grace=60 dry_run=0
while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --devices_per_process=*) devices=${1#*=} ;;
    --port=*) port=${1#*=} ;;
    --grace=*) grace=${1#*=} ;;
    --devices_per_process | --port | --grace) die "$1 needs a value: $1=VALUE" ;;
    --) shift; break ;;
    -*) die "unknown option: $1 (the trainer's arguments go after --; see --help)" ;;
    *)
      [[ -z $num_processes ]] || die "unexpected argument: $1 (the trainer's arguments go after --; see --help)"
      num_processes=$1 ;;
  esac
  shift
done
[[ -n $num_processes ]] || die "missing N, the number of processes: $PROG N [options] -- COMMAND [FLAGS...]"
[[ $num_processes =~ ^[1-9][0-9]*$ ]] || die "N must be a positive integer, not '$num_processes'"
[[ $devices =~ ^[1-9][0-9]*$ ]] || die "--devices_per_process must be a positive integer, not '$devices'"
if ! [[ $port =~ ^[1-9][0-9]*$ ]] || ((port > 65535)); then die "--port must be in 1..65535, not '$port'"; fi
[[ $grace =~ ^[0-9]+$ ]] || die "--grace must be a whole number of seconds, not '$grace'"
(($#)) || die "missing the trainer's arguments after --, e.g. -- train --config=configs/default.py --workdir=DIR"
args=("$@")

env_of() { # the environment assignments of process $1
  printf '%s\n' "XLA_FLAGS=--xla_force_host_platform_device_count=$devices" JAX_PLATFORMS=cpu PYTHONUNBUFFERED=1
}
command_of() { # the command line of process $1
  printf '%s\n' "$PYTHON" -m imagenet_train "${args[@]}" "--coordinator_address=127.0.0.1:$port" \
    "--num_processes=$num_processes" "--process_id=$1"
}

if ((dry_run)); then
  for ((i = 0; i < num_processes; i++)); do
    mapfile -t assignments < <(env_of "$i")
    mapfile -t cmd < <(command_of "$i")
    shell_quote "${assignments[@]}" "${cmd[@]}"
  done
  exit 0
fi
[[ -x $PYTHON ]] || command -v "$PYTHON" >/dev/null || die "no Python at $PYTHON: run \`make setup\` or set PYTHON"

# The supervision below runs with stderr on /dev/null, which hides bash's own notes on processes
# killed by a signal; the script's messages go to fd 3, the real stderr.
exec 3>&2
if sed -u '' </dev/null 2>/dev/null; then unbuffered=-u; else unbuffered=-l; fi  # GNU sed, else BSD sed
tmp=$(mktemp -d "${TMPDIR:-/tmp}/multiprocess.XXXXXX")
declare -a sub_pid alive status
for ((i = 0; i < num_processes; i++)); do alive[i]=0; done

python_pid() { # process $1's Python (the subshell until it has started Python)
  local pid
  pid=$(cat "$tmp/pid.$1" 2>/dev/null) || true
  echo "${pid:-${sub_pid[$1]}}"
}
signal_alive() { # sends signal $1 to every Python still running
  local i
  for ((i = 0; i < num_processes; i++)); do
    ((alive[i])) && kill "-$1" "$(python_pid "$i")" 2>/dev/null || true
  done
}
kill_groups() { # SIGKILL to every process group still running: Python, its children and its sed
  local i
  for ((i = 0; i < num_processes; i++)); do
    if ((alive[i])); then kill -KILL -- "-${sub_pid[i]}" 2>/dev/null || true; fi
  done
}
# shellcheck disable=SC2329  # the traps below call these
cleanup() {
  local i
  for ((i = 0; i < num_processes; i++)); do
    if ((alive[i])) && kill -0 "${sub_pid[i]}" 2>/dev/null; then
      kill -TERM "$(python_pid "$i")" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}
# shellcheck disable=SC2329
interrupted() { # $1: the exit status
  trap - INT TERM HUP
  echo "$PROG: interrupted: stopping the processes" >&3
  signal_alive TERM
  local waited=0
  while ((waited < KILL_AFTER_TERM * 10)) && any_alive; do sleep 0.1; waited=$((waited + 1)); done
  kill_groups
  exit "$1"
}
any_alive() {
  local i
  for ((i = 0; i < num_processes; i++)); do
    if ((alive[i])) && kill -0 "${sub_pid[i]}" 2>/dev/null; then return 0; fi
  done
  return 1
}
trap cleanup EXIT
trap 'interrupted 130' INT
trap 'interrupted 143' TERM
trap 'interrupted 129' HUP

set -m  # each process (Python, its children and its sed) in a process group of its own
for ((i = 0; i < num_processes; i++)); do
  mapfile -t assignments < <(env_of "$i")
  mapfile -t cmd < <(command_of "$i")
  (
    # Python's pid goes to a file (so that it alone gets SIGTERM and can save a checkpoint); the
    # prefixing sed ignores SIGINT so that it keeps printing until Python closes its output. The
    # subshell's own stderr (bash's note when Python dies of a signal) goes to /dev/null.
    set +e -o pipefail
    {
      echo "$BASHPID" >"$tmp/pid.$i"
      export "${assignments[@]}"
      exec "${cmd[@]}"
    } 2>&1 | { trap '' INT; exec sed "$unbuffered" "s/^/[process $i] /"; }
    rc=$?
    echo "$i $rc" >>"$tmp/exits"  # appended in order of exit
    exit "$rc"
  ) 2>/dev/null &
  sub_pid[i]=$!
  alive[i]=1
  status[i]=""
done
set +m

first="" first_status=0 deadline=-1 term_deadline=-1
find_first_failure() { # sets first and first_status from the order of exit, if a process has failed
  local i rc
  if [[ -e $tmp/exits ]]; then
    while read -r i rc; do
      if ((rc != 0)); then first=$i first_status=$rc; return; fi
    done <"$tmp/exits"
  fi
  for ((i = 0; i < num_processes; i++)); do  # a process killed from outside writes no exit line
    if [[ -n ${status[i]} ]] && ((status[i] != 0)); then first=$i first_status=${status[i]}; return; fi
  done
}
can_wait_n=0
((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 3))) && can_wait_n=1
supervise() { # waits for every process, stopping the rest once one has failed and --grace is over
  local i rc running
  while any_alive; do
    if ((can_wait_n && deadline < 0)); then
      wait -n || true  # until the next process ends
    else
      sleep 0.2
    fi
    for ((i = 0; i < num_processes; i++)); do
      if ((alive[i])) && ! kill -0 "${sub_pid[i]}" 2>/dev/null; then
        rc=0
        wait "${sub_pid[i]}" || rc=$?
        alive[i]=0
        status[i]=$rc
      fi
    done
    if [[ -z $first ]]; then
      find_first_failure
      [[ -z $first ]] || deadline=$((SECONDS + grace))
    fi
    if ((deadline >= 0 && term_deadline < 0 && SECONDS >= deadline)) && any_alive; then
      running=$(for ((i = 0; i < num_processes; i++)); do if ((alive[i])); then printf ' %d' "$i"; fi; done)
      echo "$PROG: process(es)$running still running $grace s after process $first failed: sending SIGTERM" >&3
      signal_alive TERM
      term_deadline=$((SECONDS + KILL_AFTER_TERM))
    fi
    if ((term_deadline >= 0 && SECONDS >= term_deadline)) && any_alive; then
      echo "$PROG: sending SIGKILL to the processes still running" >&3
      kill_groups
      term_deadline=$((SECONDS + 3600))
    fi
  done
  # Collects the statuses of any processes ended since the last pass.
  for ((i = 0; i < num_processes; i++)); do
    if ((alive[i])); then
      rc=0
      wait "${sub_pid[i]}" || rc=$?
      alive[i]=0
      status[i]=$rc
    fi
  done
  [[ -n $first ]] || find_first_failure
}
supervise 2>/dev/null

if [[ -n $first ]]; then
  summary=$(for ((i = 0; i < num_processes; i++)); do printf ' %d:%d' "$i" "${status[i]}"; done)
  echo "$PROG: process $first exited with status $first_status first; exit statuses (process:status):$summary" >&2
  exit "$first_status"
fi
exit 0

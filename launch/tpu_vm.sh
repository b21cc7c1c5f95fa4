#!/usr/bin/env bash
# Runs imagenet_train on a Cloud TPU VM (one host or a multi-host slice) with gcloud: creates the
# VM unless it exists, copies the code (git HEAD) to every worker, installs it, runs the same
# command on every worker and streams their logs here.
#
# Usage: launch/tpu_vm.sh --name=NAME --zone=ZONE --accelerator=TYPE [--version=VERSION] [--project=P]
#                         [--spot [--max_restarts=N]] [--delete] [--dry-run] -- COMMAND [FLAGS...]
#        launch/tpu_vm.sh --name=NAME --zone=ZONE [--project=P] --delete [--dry-run]
#
#   --name=NAME         TPU VM name
#   --zone=ZONE         zone, e.g. us-central2-b
#   --accelerator=TYPE  accelerator type, e.g. v4-8 (one host) or v4-32 (four hosts)
#   --version=VERSION   TPU software version (default tpu-ubuntu2204-base)
#   --project=P         Google Cloud project (default: gcloud's configured one)
#   --spot              create a Spot VM; when the run fails because the VM was preempted (or is
#                       gone), delete and recreate it and run again: with --workdir=gs://... the
#                       run resumes from the newest checkpoint
#   --max_restarts=N    the most recreations with --spot (default 10)
#   --delete            delete the VM at the end, whether the run succeeded or not (not when
#                       interrupted); with no `--` arguments, only delete it
#   --dry-run           print the commands of one pass (shell-quoted) instead of running them
#   --help              show this help
#
# Everything after `--` goes to `python -m imagenet_train` on every worker unchanged, command name
# first; jax.distributed finds the other workers itself, so no --coordinator_address is needed.
# Only committed code is copied (git archive HEAD). The install step gets Python 3.11 (the
# version jax 0.10.2 needs) from apt when the image lacks it, then runs `make setup` and installs
# jax[tpu]. On a slice the workdir must be on gs:// so that every worker sees the checkpoints.
#
# Example:
#   launch/tpu_vm.sh --name=r50 --zone=us-central2-b --accelerator=v4-32 --spot --delete -- \
#     train --config=configs/default.py --workdir=gs://my-bucket/runs/r50
set -euo pipefail

PROG=tpu_vm.sh
ARCHIVE=/tmp/imagenet_train.tar.gz
JAX_TPU='jax[tpu]==0.10.2'
RECHECK_S=${RECHECK_S:-60}  # with --spot: seconds before looking at the VM again after a failure

# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
warn() { echo "$PROG: warning: $*" >&2; }

name="" zone="" accelerator="" version=tpu-ubuntu2204-base project="" spot=0 delete=0 dry_run=0
max_restarts=10 have_args=0
while (($#)); do
  case $1 in
    --name=*) name=${1#*=} ;;
    --zone=*) zone=${1#*=} ;;
    --accelerator=*) accelerator=${1#*=} ;;
    --version=*) version=${1#*=} ;;
    --project=*) project=${1#*=} ;;
    --max_restarts=*) max_restarts=${1#*=} ;;
    --spot) spot=1 ;;
    --delete) delete=1 ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    --name | --zone | --accelerator | --version | --project | --max_restarts) die "$1 needs a value: $1=VALUE" ;;
    --) shift; have_args=1; break ;;
    *) die "unknown option: $1 (the trainer's arguments go after --; see --help)" ;;
  esac
  shift
done
((have_args && $# == 0)) && have_args=0
((have_args || delete)) || die "missing the trainer's arguments after --, e.g. -- train --config=configs/default.py --workdir=gs://BUCKET/DIR"
[[ -n $name ]] || die "missing required option --name=NAME"
[[ -n $zone ]] || die "missing required option --zone=ZONE"
((!have_args)) || [[ -n $accelerator ]] || die "missing required option --accelerator=TYPE"
[[ $max_restarts =~ ^[0-9]+$ ]] || die "--max_restarts must be a whole number, not '$max_restarts'"
if ((spot && have_args)); then
  on_gcs=0
  prev=""
  for arg in "$@"; do
    [[ $arg == --workdir=gs://* || ($prev == --workdir && $arg == gs://*) ]] && on_gcs=1
    prev=$arg
  done
  ((on_gcs)) || warn "--spot without --workdir=gs://...: a recreated VM starts from an empty disk, so a preempted run restarts from scratch"
fi

where=(--zone="$zone")
[[ -z $project ]] || where+=(--project="$project")
tpu=(gcloud compute tpus tpu-vm)
create=("${tpu[@]}" create "$name" --zone="$zone" --accelerator-type="$accelerator" --version="$version")
((!spot)) || create+=(--spot)
[[ -z $project ]] || create+=(--project="$project")
describe=("${tpu[@]}" describe "$name" "${where[@]}" --format='value(state)')
archive=(git archive --format=tar.gz -o "$ARCHIVE" HEAD)
copy=("${tpu[@]}" scp "$ARCHIVE" "$name:~" "${where[@]}" --worker=all)
install_command="mkdir -p imagenet_train && tar xzf imagenet_train.tar.gz -C imagenet_train && cd imagenet_train"
install_command+=" && { command -v python3.11 >/dev/null || { sudo apt-get update -qq"
install_command+=" && sudo apt-get install -y -qq python3.11 python3.11-venv; }; }"
install_command+=" && make setup PYTHON=python3.11 && .venv/bin/pip install \"$JAX_TPU\""
install=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$install_command")
if ((have_args)); then
  run_command="cd imagenet_train && .venv/bin/python -m imagenet_train $(shell_quote "$@")"
  run=("${tpu[@]}" ssh "$name" "${where[@]}" --worker=all --command="$run_command")
fi
remove=("${tpu[@]}" delete "$name" "${where[@]}" --quiet)

if ((dry_run)); then
  if ((have_args)); then
    shell_quote "${create[@]}"
    shell_quote "${archive[@]}"
    shell_quote "${copy[@]}"
    shell_quote "${install[@]}"
    shell_quote "${run[@]}"
    ((!spot)) || echo "# --spot: on preemption, delete, recreate and rerun from the newest checkpoint (up to $max_restarts times)"
  fi
  ((!delete)) || shell_quote "${remove[@]}"
  exit 0
fi

command -v gcloud >/dev/null || die "gcloud not found: install the Google Cloud CLI and run \`gcloud auth login\`"
step() { echo "+ $(shell_quote "$@")" >&2; "$@"; }
vm_state() { "${describe[@]}" 2>/dev/null || true; }  # empty when the VM does not exist

if ((!have_args)); then
  step "${remove[@]}"
  exit
fi

# git archive packs the repository's committed tree, so it runs from the repository root.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[[ -z $(git status --porcelain --untracked-files=no 2>/dev/null) ]] || warn "uncommitted changes are not copied (git archive HEAD)"

ensure_vm() { # creates the VM unless it is there and usable
  local state
  state=$(vm_state)
  case $state in
    "") step "${create[@]}" ;;
    READY) echo "$PROG: $name exists and is READY" >&2 ;;
    PREEMPTED | TERMINATED)
      ((spot)) || die "$name is $state: delete it (launch/tpu_vm.sh --name=$name --zone=$zone --delete) or pick another --name"
      step "${remove[@]}" && step "${create[@]}" ;;
    *) warn "$name is $state, not READY; trying anyway" ;;
  esac
}
one_pass() {
  ensure_vm || return
  step "${archive[@]}" || return
  step "${copy[@]}" || return
  step "${install[@]}" || return
  step "${run[@]}"
}

restarts=0
while true; do
  status=0
  one_pass || status=$?
  ((status != 0 && spot)) || break
  state=$(vm_state)
  if [[ -n $state && $state != PREEMPTED ]]; then
    # A preemption can cut the connection before the VM's state shows it.
    echo "$PROG: the run failed with status $status while $name is $state; checking again in $RECHECK_S s" >&2
    sleep "$RECHECK_S"
    state=$(vm_state)
    [[ -z $state || $state == PREEMPTED ]] || break  # a failure of the run itself
  fi
  if ((restarts >= max_restarts)); then
    echo "$PROG: $name was preempted again; giving up after $max_restarts restarts" >&2
    break
  fi
  restarts=$((restarts + 1))
  echo "$PROG: $name was preempted (state: ${state:-gone}): recreating it, restart $restarts of $max_restarts" >&2
  if [[ -n $state ]]; then step "${remove[@]}" || true; fi
  sleep "$RECHECK_S"  # also spaces out attempts when Spot capacity is short
done
((!delete)) || step "${remove[@]}" || true
((status == 0)) || echo "$PROG: the run failed with status $status" >&2
exit "$status"

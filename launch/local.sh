#!/usr/bin/env bash
# Runs imagenet_train as one process that uses every local device (all GPUs, the TPU chips of
# one host, or the CPU).
#
# Usage: launch/local.sh [--dry-run] -- COMMAND [FLAGS...]
#
#   --dry-run   print the command (shell-quoted) instead of running it
#   --help      show this help
#
# Everything after `--` goes to `python -m imagenet_train` unchanged, command name first.
# Run it from the repository root. Python is $PYTHON (default: .venv/bin/python, made by `make setup`).
#
# Example:
#   launch/local.sh -- train --config=configs/default.py --workdir=workdirs/run1 --config.batch_size=64
set -euo pipefail

PROG=local.sh
PYTHON=${PYTHON:-.venv/bin/python}
# shellcheck source=launch/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"



dry_run=0
while (($#)); do
  case $1 in
    --dry-run) dry_run=1; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; break ;;
    *) die "unknown option: $1 (the trainer's arguments go after --; see --help)" ;;
  esac
done
(($#)) || die "missing the trainer's arguments after --, e.g. -- train --config=configs/default.py --workdir=DIR"

cmd=("$PYTHON" -m imagenet_train "$@")
if ((dry_run)); then
  shell_quote "${cmd[@]}"
  exit 0
fi
[[ -x $PYTHON ]] || command -v "$PYTHON" >/dev/null || die "no Python at $PYTHON: run \`make setup\` or set PYTHON"
exec "${cmd[@]}"

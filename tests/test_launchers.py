"""The launch/ scripts: their --dry-run output, argument errors, and multiprocess.sh's supervision.

Nothing here needs a network, gcloud or SLURM: the dry runs only print, and the real runs use
stand-ins for Python, gcloud and git written into tmp_path.
"""

import os
import pathlib
import shlex
import shutil
import subprocess

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAUNCHERS = ["local.sh", "multiprocess.sh", "slurm.sbatch", "tpu_vm.sh"]
ARGS = ["train", "--config=configs/default.py", "--workdir=workdirs/sample", "--config.batch_size=64"]


def _env(**extra):
  env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in ("PYTHON", "XLA_FLAGS")}
  env.update(extra)
  return env


def _launch(script, *args, env=None, timeout=20):
  return subprocess.run(
    ["bash", f"launch/{script}", *args], cwd=REPO, env=env or _env(), capture_output=True, text=True, timeout=timeout
  )


def _dry_run(script, *args):
  result = _launch(script, *args)
  assert result.returncode == 0, result.stderr
  return result.stdout.splitlines()


def _option(words, name):
  return next(word.split("=", 1)[1] for word in words if word.startswith(name + "="))


@pytest.mark.parametrize("script", LAUNCHERS)
def test_scripts_parse_and_have_help(script):
  path = REPO / "launch" / script
  assert path.read_text().startswith("#!/usr/bin/env bash\n")
  assert "set -euo pipefail" in path.read_text()
  subprocess.run(["bash", "-n", str(path)], check=True)
  result = _launch(script, "--help")
  assert result.returncode == 0 and "Usage:" in result.stdout and "Example:" in result.stdout


def test_shellcheck():
  shellcheck = shutil.which("shellcheck")
  if shellcheck is None:
    pytest.skip("shellcheck is not installed")
  subprocess.run([shellcheck, *(f"launch/{script}" for script in LAUNCHERS)], cwd=REPO, check=True)


def test_local_dry_run():
  lines = _dry_run("local.sh", "--dry-run", "--", *ARGS)
  assert len(lines) == 1
  assert shlex.split(lines[0]) == [".venv/bin/python", "-m", "imagenet_train", *ARGS]


def test_local_dry_run_quotes_arguments_so_the_shell_gives_them_back():
  tricky = ["train", "--config.name=it's a test", "", "a;b", "--x=$HOME", "*"]
  (line,) = _dry_run("local.sh", "--dry-run", "--", *tricky)
  assert shlex.split(line)[3:] == tricky
  printed = subprocess.run(
    ["bash", "-c", f"set -- {line}; shift 3; printf '%s\\n' \"$@\""], capture_output=True, text=True, check=True
  ).stdout
  assert printed.split("\n")[:-1] == tricky


def test_multiprocess_dry_run():
  lines = _dry_run("multiprocess.sh", "2", "--dry-run", "--", *ARGS)
  assert len(lines) == 2
  addresses = set()
  for process_id, line in enumerate(lines):
    words = shlex.split(line)
    python = words.index(".venv/bin/python")
    assert "XLA_FLAGS=--xla_force_host_platform_device_count=4" in words[:python]
    assert "JAX_PLATFORMS=cpu" in words[:python]
    assert words[python + 1 : python + 3 + len(ARGS)] == ["-m", "imagenet_train", *ARGS]
    assert _option(words, "--process_id") == str(process_id)
    assert _option(words, "--num_processes") == "2"
    addresses.add(_option(words, "--coordinator_address"))
  assert addresses == {"127.0.0.1:12355"}


def test_multiprocess_options():
  lines = _dry_run("multiprocess.sh", "3", "--devices_per_process=2", "--port=23456", "--dry-run", "--", *ARGS)
  assert len(lines) == 3
  assert all("--xla_force_host_platform_device_count=2" in line and "127.0.0.1:23456" in line for line in lines)
  result = _launch("multiprocess.sh", "--dry-run", "--", *ARGS)
  assert result.returncode != 0 and "N" in result.stderr


def test_slurm_dry_run():
  lines = _dry_run("slurm.sbatch", "--dry-run", "--", *ARGS)
  assert len(lines) == 2
  assert shlex.split(lines[0]) == ["sbatch", "launch/slurm.sbatch", "--", *ARGS]
  assert shlex.split(lines[1]) == ["srun", "--kill-on-bad-exit=1", ".venv/bin/python", "-m", "imagenet_train", *ARGS]


def test_slurm_script_defaults():
  directives = [
    line.split()[1] for line in (REPO / "launch/slurm.sbatch").read_text().splitlines() if line.startswith("#SBATCH")
  ]
  for directive in [
    "--job-name=imagenet_train",
    "--nodes=1",
    "--ntasks-per-node=8",
    "--cpus-per-task=8",
    "--time=24:00:00",
    "--output=slurm-%j.out",
    "--signal=TERM@120",
    "--requeue",
  ]:
    assert directive in directives


def test_tpu_vm_dry_run():
  args = [*ARGS[:2], "--workdir=gs://b/w", ARGS[3]]
  result = _launch(
    "tpu_vm.sh",
    "--name=t",
    "--zone=us-central2-b",
    "--accelerator=v4-32",
    "--spot",
    "--delete",
    "--dry-run",
    "--",
    *args,
  )
  assert result.returncode == 0, result.stderr
  assert "warning" not in result.stderr  # the workdir is on gs://
  lines = result.stdout.splitlines()
  commands = [shlex.split(line) for line in lines if not line.startswith("#")]
  create, archive, copy, install, run, delete = commands
  assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"] and create[5] == "t"
  assert {"--zone=us-central2-b", "--accelerator-type=v4-32", "--version=tpu-ubuntu2204-base", "--spot"} <= set(create)
  assert archive[:2] == ["git", "archive"] and archive[-1] == "HEAD"
  assert copy[4] == "scp" and "t:~" in copy and "--worker=all" in copy
  assert install[4] == "ssh" and "--worker=all" in install and "make setup" in _option(install, "--command")
  assert run[4] == "ssh" and "--worker=all" in run
  remote = shlex.split(_option(run, "--command"))
  assert remote == ["cd", "imagenet_train", "&&", ".venv/bin/python", "-m", "imagenet_train", *args]
  assert delete[4:] == ["delete", "t", "--zone=us-central2-b", "--quiet"]
  assert any(line.startswith("# --spot:") and "10 times" in line for line in lines)


def test_tpu_vm_warns_about_a_local_workdir_with_spot():
  result = _launch("tpu_vm.sh", "--name=t", "--zone=z", "--accelerator=v4-8", "--spot", "--dry-run", "--", *ARGS)
  assert result.returncode == 0 and "gs://" in result.stderr


def test_tpu_vm_delete_alone_only_deletes():
  lines = _dry_run("tpu_vm.sh", "--name=t", "--zone=z", "--delete", "--dry-run")
  assert lines == ["gcloud compute tpus tpu-vm delete t --zone=z --quiet"]


def test_tpu_vm_missing_name():
  result = _launch("tpu_vm.sh", "--zone=us-central2-b", "--accelerator=v4-32", "--dry-run", "--", *ARGS)
  assert result.returncode != 0
  assert result.stdout == ""
  assert len(result.stderr.splitlines()) == 1 and "--name" in result.stderr


@pytest.mark.parametrize("script", LAUNCHERS)
def test_unknown_option_is_one_line_on_stderr(script):
  count = ["2"] if script == "multiprocess.sh" else []
  result = _launch(
    script,
    *count,
    "--bogus-option",
    "--dry-run",
    "--",
    *ARGS,
    env=_env(SLURM_JOB_ID="1") if script == "slurm.sbatch" else None,
  )
  assert result.returncode != 0 and result.stdout == ""
  assert len(result.stderr.splitlines()) == 1 and "--bogus-option" in result.stderr


FAKE_PYTHON = """#!/usr/bin/env bash
for arg in "$@"; do case $arg in --process_id=*) id=${arg#*=} ;; esac; done
echo "args: $*"
echo "XLA_FLAGS=$XLA_FLAGS JAX_PLATFORMS=$JAX_PLATFORMS"
echo "on stderr" >&2
[[ $id == 0 ]] && exit 0
sleep 0.2
exit 3
"""


def test_multiprocess_runs_and_reports_the_first_failure(tmp_path):
  python = tmp_path / "python"
  python.write_text(FAKE_PYTHON)
  python.chmod(0o755)
  result = _launch("multiprocess.sh", "2", "--grace=5", "--", *ARGS, env=_env(PYTHON=str(python)))
  output = result.stdout + result.stderr
  assert result.returncode == 3, output
  for i in range(2):
    mine = [line for line in result.stdout.splitlines() if line.startswith(f"[process {i}] ")]
    assert len(mine) == 3, output
    assert (
      f"[process {i}] args: -m imagenet_train {' '.join(ARGS)} --coordinator_address=127.0.0.1:12355 "
      f"--num_processes=2 --process_id={i}" in mine
    )
    assert f"[process {i}] XLA_FLAGS=--xla_force_host_platform_device_count=4 JAX_PLATFORMS=cpu" in mine
    assert f"[process {i}] on stderr" in mine
  assert all(line.startswith("[process ") for line in result.stdout.splitlines())
  (summary,) = [line for line in result.stderr.splitlines() if "first" in line]
  assert summary.startswith("multiprocess.sh: process 1 exited with status 3 first")


def test_multiprocess_stops_the_others_after_the_grace_period(tmp_path):
  python = tmp_path / "python"
  python.write_text(FAKE_PYTHON.replace("[[ $id == 0 ]] && exit 0", "[[ $id == 0 ]] && exec sleep 30"))
  python.chmod(0o755)
  result = _launch("multiprocess.sh", "2", "--grace=1", "--", "train", env=_env(PYTHON=str(python)))
  assert result.returncode == 3, result.stderr
  assert "SIGTERM" in result.stderr
  assert "multiprocess.sh: process 1 exited with status 3 first" in result.stderr


FAKE_GCLOUD = """#!/usr/bin/env bash
echo "gcloud $*" >> "$FAKE_DIR/log"
case $4 in
  describe) [[ -s $FAKE_DIR/state ]] || exit 1; cat "$FAKE_DIR/state" ;;
  create) echo READY > "$FAKE_DIR/state" ;;
  delete) rm -f "$FAKE_DIR/state" ;;
  ssh)
    if [[ $* == *"-m imagenet_train"* ]]; then
      echo run >> "$FAKE_DIR/runs"
      if [[ $(wc -l < "$FAKE_DIR/runs") -eq 1 ]]; then echo PREEMPTED > "$FAKE_DIR/state"; exit 255; fi
    fi ;;
esac
"""


def test_tpu_vm_spot_recreates_a_preempted_vm(tmp_path):
  bin_dir = tmp_path / "bin"
  bin_dir.mkdir()
  (bin_dir / "gcloud").write_text(FAKE_GCLOUD)
  (bin_dir / "git").write_text('#!/usr/bin/env bash\necho "git $*" >> "$FAKE_DIR/log"\n')
  for tool in bin_dir.iterdir():
    tool.chmod(0o755)
  env = _env(PATH=f"{bin_dir}:{os.environ['PATH']}", FAKE_DIR=str(tmp_path), RECHECK_S="0")
  result = _launch(
    "tpu_vm.sh",
    "--name=t",
    "--zone=z",
    "--accelerator=v4-8",
    "--spot",
    "--delete",
    "--",
    "train",
    "--workdir=gs://b/w",
    env=env,
  )
  assert result.returncode == 0, result.stderr
  verbs = [
    line.split()[4] if line.startswith("gcloud") else line.split()[1]
    for line in (tmp_path / "log").read_text().splitlines()
  ]
  one_pass = ["describe", "create", "archive", "scp", "ssh", "ssh"]
  assert verbs == ["status", *one_pass, "describe", "delete", *one_pass, "delete"]
  assert "preempted" in result.stderr

"""The command line end to end: train, evaluate, models; metrics land in TensorBoard files."""

import json
import subprocess
import sys

from tensorboard.backend.event_processing import event_accumulator

from imagenet_train import results

from conftest import REPO
from test_bad_input import run_cli, train_args


def test_train_then_evaluate_then_report(config, tmp_path):
  returncode, _, stderr = run_cli(
    *train_args(config, tmp_path, "--config.num_train_steps=6", "--config.log_every_steps=3")
  )
  assert returncode == 0, stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["steps"] == 6 and 0.0 <= summary["eval/top5_error"] <= summary["eval/top1_error"] <= 100.0

  events = event_accumulator.EventAccumulator(str(tmp_path), size_guidance={event_accumulator.TENSORS: 0})
  events.Reload()
  tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
  for tag in (
    "train/loss",
    "train/top1",
    "train/top5",
    "train/learning_rate",
    "train/images_per_second",
    "train/step_time_ms",
    "eval/log_loss",
    "eval/top1_error",
    "eval/top5_error",
    "steps_per_sec",
  ):
    assert tag in tags, sorted(tags)

  # Training's own evaluation of step 6 is set aside: what `report` shows next comes from `evaluate`.
  trained = results.read(tmp_path / "eval_center_step_6.json")
  (tmp_path / "eval_center_step_6.json").rename(tmp_path / "training_evaluation.json.bak")
  returncode, _, stderr = run_cli("evaluate", *train_args(config, tmp_path)[1:])
  assert returncode == 0, stderr[-3000:]
  evaluated = results.read(tmp_path / "eval_center_step_6.json")
  assert evaluated.step == 6 and evaluated.protocol == "center"
  for key in ("log_loss", "top1_error", "top5_error"):
    assert abs(getattr(evaluated.parameters["raw"], key) - summary[f"eval/{key}"]) < 1e-4, key
  assert evaluated.parameters["raw"].per_class_accuracy == trained.parameters["raw"].per_class_accuracy

  returncode, _, stderr = run_cli("report", f"--runs={tmp_path}", f"--out={tmp_path / 'report'}")
  assert returncode == 0, stderr[-3000:]
  table = (tmp_path / "report" / "report.md").read_text()
  row = next(line for line in table.splitlines() if line.startswith(f"| {tmp_path.name} "))
  assert f"| {evaluated.parameters['raw'].top1_error:.2f} |" in row and "| 6 |" in row, table


def test_models_lists_the_registry():
  # Every model's counts are asserted in test_models; the command is checked on two of them.
  result = subprocess.run(
    [sys.executable, "-m", "imagenet_train", "models", "--model=lenet5,resnet50"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 0, result.stderr
  rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[1:]}
  assert rows.keys() == {"lenet5", "resnet50"}
  assert rows["lenet5"][:3] == ["61,706", "0.000", "G"]  # LeNet-5 with full C3 connections
  assert rows["resnet50"][:3] == ["25,557,032", "4.089", "G"]  # torchvision's counts
  result = subprocess.run(
    [sys.executable, "-m", "imagenet_train", "models", "--model=resnet5"],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert result.returncode == 2 and "unknown model 'resnet5': did you mean" in result.stderr


def test_step_benchmark_prints_a_row_without_importing_tensorflow():
  code = (
    "import sys; sys.path.insert(0, 'benchmarks'); import step_throughput as bench; "
    "row = bench.measure('lenet5', batch=16, image_size=28, dtype='float32', steps=2, warmup=1); "
    "assert 'tensorflow' not in sys.modules, 'the step benchmark imported TensorFlow'; "
    "assert row['images_per_s'] > 0 and row['loss_finite'], row; print(row['input'])"
  )
  result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip() == "28x28x1"

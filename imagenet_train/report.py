"""Puts finished runs beside the errors their papers reported, under the same evaluation protocol.

A run is a workdir as training and `evaluate` leave it: summary.json (steps, time, throughput), config.json (the
model, the paper block, the protocol), the evaluation results (imagenet_train.results: training's own evaluations
under the center protocol, `evaluate`'s under any protocol, an ensemble's in the folder given to it) and
TensorBoard event files. `write_report` gives one markdown table row per run, one more per averaged parameters (EMA,
Polyak) and one per ensemble, and draws the errors beside the papers' and the training curves.

A sweep's runs record their overrides in `sweep.json` (see imagenet_train.sweep), and each
overridden field gets its own column, so the table shows what changed next to what it gave.
"""

import json
import math
import os
import pathlib

from imagenet_train import protocols, results
from imagenet_train.errors import UserError
from imagenet_train.sweep import format_value

_LINE_STYLES = {"raw": "-", "ema": "--", "polyak": ":"}


def collect(dirs: list[str]) -> list[dict]:
  """The runs under `dirs` in path order: each workdir holding a summary.json or evaluation results, the directory
  itself or any below it.

  Each run is {"path", "name", "sweep", "overrides", "summary", "config", "evaluations", "ensembles"}: a run
  outside a sweep is named after its directory and overrides nothing; summary is {} and config None where the
  file is missing; evaluations maps each protocol to its latest step's Results, ensembles lists the ensemble
  Results in the folder. A run found through two of `dirs` is listed once.
  """
  paths = set()
  for directory in dirs:
    found = _workdirs(directory)
    if not found:
      raise UserError(
        f"no runs in {directory}: pass workdirs that hold a summary.json (finished train runs) or "
        "evaluation results (eval_<protocol>_step_<N>.json)"
      )
    paths |= found
  return [_run(path) for path in sorted(paths)]


def _workdirs(directory: str) -> set[pathlib.Path]:
  if not os.path.isdir(directory):
    return set()
  return {
    file.parent.resolve()
    for pattern in ("summary.json", "eval_*.json")
    for file in pathlib.Path(directory).rglob(pattern)
  }


def _run(path: pathlib.Path) -> dict:
  info = _read_json(path / "sweep.json") if (path / "sweep.json").is_file() else {}
  found = results.latest(path)
  return {
    "path": str(path),
    "name": info.get("name", path.name),
    "sweep": info.get("sweep"),
    "overrides": info.get("overrides", {}),
    "summary": _read_json(path / "summary.json") if (path / "summary.json").is_file() else {},
    "config": _read_json(path / "config.json") if (path / "config.json").is_file() else None,
    "evaluations": {r.protocol: r for r in found if r.protocol != protocols.ENSEMBLE},
    "ensembles": [r for r in found if r.protocol == protocols.ENSEMBLE],
  }


def _read_json(path: pathlib.Path, remedy: str = "run its training again") -> dict:
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:  # a run killed while writing it
    raise UserError(f"{path} is not valid JSON ({error}): delete it, or {remedy}") from None


def comparison_rows(runs: list[dict]) -> list[dict]:
  """The table's rows in the runs' order: each run's raw parameters, then its averages, then its folder's ensembles.

  A row is {"name", "overrides", "model", "protocol" (the table's cell), "paper" (see _paper), "top1", "top5" (errors
  in percent), "loss", "steps", "wall_time_s", "images_per_second"}, None where unknown.
  """
  rows = []
  for run in runs:
    if run["summary"] or run["evaluations"]:
      rows += _run_rows(run)
    rows += [row for ensemble in run["ensembles"] for row in _ensemble_rows(run, ensemble)]
  return rows


def _run_rows(run: dict) -> list[dict]:
  """The run's results under its paper's protocol (without a paper, its config's evaluation.protocol) where
  `evaluate` wrote them, else training's own, under the center protocol, with the cell saying so."""
  config, summary = run["config"] or {}, run["summary"]
  paper = _paper(config.get("paper"), "")
  wanted = paper["protocol"] or config.get("evaluation", {}).get("protocol") or protocols.CENTER
  used = wanted if wanted in run["evaluations"] else protocols.CENTER
  evaluation = run["evaluations"].get(used)
  # Without config.json nothing says how the run evaluated, nor what its paper reported.
  protocol = _protocol_cell(used, paper, config.get("data", {}).get("eval_split")) if run["config"] else None
  common = {
    "overrides": run["overrides"],
    "model": config.get("model"),
    "protocol": protocol,
    "paper": paper,
    "steps": evaluation.step if evaluation else summary.get("steps"),
    "wall_time_s": summary.get("wall_time_s"),
    "images_per_second": summary.get("train_images_per_second"),
  }
  return [
    {**common, "name": _variant_name(run["name"], variant), **numbers}
    for variant, numbers in (_numbers(evaluation) or {results.RAW: {}}).items()
  ]


def _ensemble_rows(run: dict, ensemble: results.Results) -> list[dict]:
  """An ensemble beside its first member's paper's ensemble numbers; its name gives its size, and the paper's
  where they differ."""
  members = [member.workdir for member in ensemble.members]
  configs = [
    _read_json(path) if (path := pathlib.Path(member) / "config.json").is_file() else None for member in members
  ]
  first = configs[0] if configs and configs[0] else {}
  paper = _paper(first.get("paper"), "ensemble_")
  size = f"ensemble of {len(members)}"
  if paper["models"] and paper["models"] != len(members):
    size += f"; paper: {paper['models']}"
  common = {
    "overrides": run["overrides"],
    "model": ensemble.model or None,
    "paper": paper,
    "protocol": _protocol_cell(ensemble.member_protocol, paper, first.get("data", {}).get("eval_split")),
    "steps": None,
    "wall_time_s": None,
    "images_per_second": None,
  }
  return [
    {**common, "name": _variant_name(f"{run['name']} ({size})", variant), **numbers}
    for variant, numbers in (_numbers(ensemble) or {results.RAW: {}}).items()
  ]


def _variant_name(name: str, variant: str) -> str:
  return name if variant == "raw" else f"{name} ({variant})"


def _paper(block: dict | None, prefix: str) -> dict:
  """The paper's single-model (prefix "") or ensemble ("ensemble_") errors in percent, their protocol, split and
  ensemble size, and where they are ("source"); all empty where the paper reports neither error."""
  block = block or {}
  errors = {"top1": block.get(f"{prefix}top1"), "top5": block.get(f"{prefix}top5")}
  if errors["top1"] is None and errors["top5"] is None:
    return {**errors, "protocol": "", "split": "", "models": 0, "source": None}
  source = ", ".join(filter(None, (block.get("reference"), block.get("table"))))
  if block.get("notes"):
    source += f" ({block['notes']})"
  return {
    **errors,
    "protocol": block.get(f"{prefix}protocol") or "",
    "split": block.get(f"{prefix}split") or "",
    "models": block.get(f"{prefix}models") or 0,
    "source": source or None,
  }


def _protocol_cell(used: str, paper: dict, eval_split: str | None) -> str:
  """The protocol of the run's numbers, followed by whatever the paper's numbers were measured on instead."""
  differences = [paper["protocol"]] if paper["protocol"] and paper["protocol"] != used else []
  if paper["split"] and eval_split and _split_kind(eval_split) != paper["split"]:
    differences.append(f"{paper['split']} split")
  return f"{used} (paper: {', '.join(differences)})" if differences else used


def _split_kind(split: str) -> str:
  """A tfds split such as `validation[:10%]` as the papers name it: val, test."""
  name = split.split("[")[0]
  return "val" if name == "validation" else name


def _numbers(evaluation: results.Results | None) -> dict[str, dict]:
  """Each parameter set's errors (percent) and log loss, as the table's cells read them."""
  if evaluation is None:
    return {}
  return {
    name: {"top1": stats.top1_error, "top5": stats.top5_error, "loss": stats.log_loss}
    for name, stats in evaluation.parameters.items()
  }


def _difference(row: dict, key: str) -> float | None:
  run, paper = row.get(key), row["paper"][key]
  return None if run is None or paper is None else run - paper


# (header, alignment, value, format) of the columns after the run's name and overrides; numbers right-aligned.
_COLUMNS = (
  ("model", "---", lambda row: row["model"], ""),
  ("protocol", "---", lambda row: row["protocol"], ""),
  ("paper top-1 %", "---:", lambda row: row["paper"]["top1"], "g"),  # as the paper printed it
  ("top-1 error %", "---:", lambda row: row.get("top1"), ".2f"),
  ("Δ top-1", "---:", lambda row: _difference(row, "top1"), "+.2f"),
  ("paper top-5 %", "---:", lambda row: row["paper"]["top5"], "g"),
  ("top-5 error %", "---:", lambda row: row.get("top5"), ".2f"),
  ("Δ top-5", "---:", lambda row: _difference(row, "top5"), "+.2f"),
  ("eval loss", "---:", lambda row: row.get("loss"), ".4f"),
  ("steps", "---:", lambda row: row["steps"], ""),
  ("wall time s", "---:", lambda row: row["wall_time_s"], ".0f"),
  ("images/s", "---:", lambda row: row["images_per_second"], ".0f"),
)


def markdown_table(rows: list[dict]) -> str:
  """One table row per row, in the order given: its name, the value of each field any run overrides (blank where
  this run keeps the config's), then its results; an unknown value shows as `-`, and a column with no known value
  in any row is left out (a sweep on a config without paper numbers gets no paper columns)."""
  fields = list(dict.fromkeys(field for row in rows for field in row["overrides"]))
  cells = [[_cell(value(row), spec) for _, _, value, spec in _COLUMNS] for row in rows]
  kept = [index for index in range(len(_COLUMNS)) if any(row_cells[index] != "-" for row_cells in cells)]
  header = ["run", *fields, *(_COLUMNS[index][0] for index in kept)]
  alignment = ["---"] * (1 + len(fields)) + [_COLUMNS[index][1] for index in kept]
  body = [
    [row["name"], *(_override(row, field) for field in fields), *(row_cells[index] for index in kept)]
    for row, row_cells in zip(rows, cells)
  ]
  return "\n".join(_row(line) for line in [header, alignment, *body])


def _cell(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def _override(row: dict, field: str) -> str:
  return format_value(row["overrides"][field]) if field in row["overrides"] else ""


def _row(cells: list[str]) -> str:
  """A table row; a `|` inside a cell (a preprocessing string's) is escaped so that it does not split the cell."""
  return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def paper_sources(rows: list[dict]) -> list[str]:
  """Where the table's paper numbers come from: a markdown list item per source, naming the models that use it."""
  models = {}
  for row in rows:
    if row["paper"]["source"]:
      models.setdefault(row["paper"]["source"], []).append(row["model"])
  return [f"- {', '.join(filter(None, dict.fromkeys(names)))}: {source}" for source, names in models.items()]


def markdown(rows: list[dict]) -> str:
  """The table, followed by the papers' sources where it shows paper numbers."""
  sources = paper_sources(rows)
  if not sources:
    return markdown_table(rows)
  return "\n".join(
    [
      markdown_table(rows),
      "",
      "Δ is the run's error minus the paper's, in percentage points "
      "(negative: the run's error is lower). Paper numbers from:",
      "",
      *sources,
    ]
  )


def plot_errors(rows: list[dict], path) -> bool:
  """Writes a PNG of horizontal bars, each row's error beside its paper's (top-1 left, top-5 right), labelled with
  the protocol cell; False, writing nothing, where no row has an error to draw."""
  keys = ("top1", "top5")
  drawn = [row for row in rows if any(row.get(key) is not None or row["paper"][key] is not None for key in keys)]
  if not drawn:
    return False
  import numpy as np
  from matplotlib.figure import Figure  # without pyplot: no global backend state, Agg for the PNG

  figure = Figure(figsize=(12, 1.5 + 0.6 * len(drawn)), layout="constrained")
  positions, height = np.arange(len(drawn)), 0.4
  for index, key in enumerate(keys):
    axes = figure.add_subplot(1, 2, index + 1)
    for offset, (label, values, spec, color) in enumerate(
      (
        ("paper", [row["paper"][key] for row in drawn], "g", "0.6"),
        ("run", [row.get(key) for row in drawn], ".2f", "C0"),
      )
    ):
      bars = axes.barh(
        positions + (offset - 0.5) * height,
        [math.nan if value is None else value for value in values],
        height,
        label=label,
        color=color,
      )
      axes.bar_label(
        bars, labels=["" if value is None else format(value, spec) for value in values], padding=2, fontsize=7
      )
    axes.set_yticks(
      positions,
      [f"{row['name']}\n{row['protocol']}" if row["protocol"] else row["name"] for row in drawn] if index == 0 else [],
    )
    axes.invert_yaxis()  # the first row on top, as in the table
    axes.set_xlabel(f"top-{key[-1]} error %")
    axes.margins(x=0.15)  # room for the value labels
  figure.legend(*axes.get_legend_handles_labels(), loc="outside upper center", ncols=2)  # above: covers no bar
  figure.savefig(path, dpi=110)
  return True


def read_curves(workdir: str) -> dict[str, tuple[list[int], list[float]]]:
  """Each scalar in the workdir's TensorBoard event files (CLU writes them as tensor summaries) as (steps, values)
  in step order; where a resumed run wrote a step again, its later value."""
  if not any(pathlib.Path(workdir).glob("events.out.tfevents.*")):
    return {}  # spares the TensorFlow import that reading them brings
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util

  accumulator = event_accumulator.EventAccumulator(workdir, size_guidance={event_accumulator.TENSORS: 0})  # 0: all
  accumulator.Reload()
  curves = {}
  for tag in accumulator.Tags()[event_accumulator.TENSORS]:
    if accumulator.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
      continue  # hyperparameters and the like, tensor summaries too
    points = {event.step: float(tensor_util.make_ndarray(event.tensor_proto)) for event in accumulator.Tensors(tag)}
    steps = sorted(points)
    curves[tag] = (steps, [points[step] for step in steps])
  return curves


def plot_curves(curves: list[tuple[str, dict]], path) -> bool:
  """Writes a PNG of the training loss and the evaluation top-1 error against the step, one colour per run and
  dashed or dotted lines for its EMA or Polyak parameters, from (run name, read_curves) pairs; False, writing
  nothing, where no run has either curve."""
  tags = (results.TRAIN_LOSS, *(results.scalar_key(variant, "top1_error") for variant in results.PARAMETER_SETS))
  curves = [(name, run_curves) for name, run_curves in curves if any(tag in run_curves for tag in tags)]
  if not curves:
    return False
  from matplotlib.figure import Figure

  figure = Figure(figsize=(12, 4.5), layout="constrained")
  loss_axes, error_axes = figure.subplots(1, 2)
  for index, (name, run_curves) in enumerate(curves):
    color = f"C{index % 10}"
    if results.TRAIN_LOSS in run_curves:
      loss_axes.plot(*run_curves[results.TRAIN_LOSS], color=color, label=name)
    for variant in results.PARAMETER_SETS:
      if (tag := results.scalar_key(variant, "top1_error")) in run_curves:
        error_axes.plot(
          *run_curves[tag], _LINE_STYLES[variant], color=color, marker=".", label=_variant_name(name, variant)
        )
  for axes, title in ((loss_axes, "training loss"), (error_axes, "evaluation top-1 error % (center)")):
    axes.set_xlabel("step")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    if axes.has_data():
      axes.legend(fontsize=8)
  figure.savefig(path, dpi=110)
  return True


def write_report(dirs: list[str], out_dir: str | None = None) -> str:
  """The markdown comparison of the runs under `dirs` with their papers.

  Given `out_dir`, also writes there report.md (the same markdown), errors.png (plot_errors) and curves.png
  (plot_curves), each chart where there is something to draw; an `out_dir` ending in .md names the markdown file
  itself, and the charts go beside it.
  """
  runs = collect(dirs)
  rows = comparison_rows(runs)
  text = markdown(rows)
  if out_dir:
    report_path = pathlib.Path(out_dir) if out_dir.endswith(".md") else pathlib.Path(out_dir) / "report.md"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(text + "\n")
    plot_errors(rows, report_path.parent / "errors.png")
    plot_curves([(run["name"], read_curves(run["path"])) for run in runs], report_path.parent / "curves.png")
  return text

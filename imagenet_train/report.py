"""Compares finished runs: one markdown table row per workdir that holds a `summary.json`.

A sweep's runs record their overrides in `sweep.json` (see imagenet_train.sweep), and each
overridden field gets its own column, so the table shows what changed next to what it gave.
"""

import json
import os
import pathlib

from imagenet_train.errors import UserError
from imagenet_train.sweep import format_value

# (header, summary key, format) of the result columns; errors rather than accuracies, as papers report them.
_METRICS = (
    ("top-1 error %", "eval/top1", lambda top1: f"{100 * (1 - top1):.2f}"),
    ("top-5 error %", "eval/top5", lambda top5: f"{100 * (1 - top5):.2f}"),
    ("eval loss", "eval/loss", lambda loss: f"{loss:.4f}"),
    ("steps", "steps", str),
    ("wall time s", "wall_time_s", lambda seconds: f"{seconds:.0f}"),
    ("images/s", "train_images_per_second", lambda rate: f"{rate:.0f}"),
)


def collect(dirs: list[str]) -> list[dict]:
  """The runs under `dirs` in path order: each workdir holding a summary.json, the directory itself or any below it.

  Each run is {"path", "name", "sweep", "overrides", "summary"}; a run outside a sweep is named after its
  directory and overrides nothing. A run found through two of `dirs` is listed once.
  """
  paths = set()
  for directory in dirs:
    found = _workdirs(directory)
    if not found:
      raise UserError(f"no runs in {directory}: pass workdirs that hold a summary.json (finished train runs)")
    paths |= found
  return [_run(path) for path in sorted(paths)]


def _workdirs(directory: str) -> set[pathlib.Path]:
  if not os.path.isdir(directory):
    return set()
  return {summary.parent.resolve() for summary in pathlib.Path(directory).rglob("summary.json")}


def _run(path: pathlib.Path) -> dict:
  info = _read_json(path / "sweep.json") if (path / "sweep.json").is_file() else {}
  return {"path": str(path), "name": info.get("name", path.name), "sweep": info.get("sweep"),
          "overrides": info.get("overrides", {}), "summary": _read_json(path / "summary.json")}


def _read_json(path: pathlib.Path) -> dict:
  try:
    return json.loads(path.read_text())
  except json.JSONDecodeError as error:  # a run killed while writing it
    raise UserError(f"{path} is not valid JSON ({error}): delete it, or run its training again") from None


def markdown_table(runs: list[dict]) -> str:
  """One row per run, in the order given: its name, the value of each field any run overrides (blank where
  this run keeps the config's), then its results; a result the summary lacks shows as `-`."""
  fields = list(dict.fromkeys(field for run in runs for field in run["overrides"]))
  header = ["run", *fields, *(title for title, _, _ in _METRICS)]
  rows = [[run["name"], *(_override(run, field) for field in fields), *_results(run["summary"])] for run in runs]
  alignment = ["---"] * (1 + len(fields)) + ["---:"] * len(_METRICS)  # numbers right-aligned
  return "\n".join(_row(cells) for cells in [header, alignment, *rows])


def _override(run: dict, field: str) -> str:
  return format_value(run["overrides"][field]) if field in run["overrides"] else ""


def _results(summary: dict) -> list[str]:
  return [render(summary[key]) if summary.get(key) is not None else "-" for _, key, render in _METRICS]


def _row(cells: list[str]) -> str:
  """A table row; a `|` inside a cell (a preprocessing string's) is escaped so that it does not split the cell."""
  return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def write_report(dirs: list[str], out_path: str | None = None) -> str:
  """The markdown table of the runs under `dirs`, also written to `out_path` when given."""
  table = markdown_table(collect(dirs))
  if out_path:
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w") as f:
      f.write(table + "\n")
  return table

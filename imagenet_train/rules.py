"""What a value may be: the one vocabulary of checks for config fields and preprocessing op arguments.

A rule answers `problem(value)` with None when the value is right, or with what the value must be
("a whole number >= 1"), which the caller puts in a sentence with the field's name, the value and an example.
Rules know nothing of configs or ops: `config.schema` pairs them with its fields, `data.ops` with each op's
arguments, so that each check sits beside what it checks.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _interval(low, high, low_open: bool, high_open: bool) -> str:
  if high is None:
    return f"> {low:g}" if low_open else f">= {low:g}"
  if low is None:
    return f"< {high:g}" if high_open else f"<= {high:g}"
  return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


@dataclasses.dataclass(frozen=True)
class Number:
  """A finite number (a whole one with `whole`) between `low` and `high`; None leaves that end open."""

  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  whole: bool = False

  def describe(self) -> str:
    kind = "a whole number" if self.whole else "a number"
    if self.low is None and self.high is None:
      return kind
    return f"{kind} {_interval(self.low, self.high, self.low_open, self.high_open)}"

  def problem(self, value) -> str | None:
    if not _is_number(value) or not math.isfinite(value) or (self.whole and not isinstance(value, int)):
      return self.describe()
    below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
    above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
    return self.describe() if below or above else None


def whole(low: int | None = None, high: int | None = None) -> Number:
  return Number(low, high, whole=True)


POSITIVE_WHOLE = whole(1)
COUNT = whole(0)
NON_NEGATIVE = Number(0.0)
POSITIVE = Number(0.0, low_open=True)
FRACTION = Number(0.0, 1.0)  # [0, 1]
BELOW_ONE = Number(0.0, 1.0, high_open=True)  # [0, 1): momenta, decays, smoothing
FACTOR = Number(0.0, 1.0, low_open=True)  # (0, 1]: multiplied into a rate


@dataclasses.dataclass(frozen=True)
class OneOf:
  """One of `choices`, or of what `choices` returns (a registry read only when checking)."""

  choices: Sequence | Callable[[], Sequence]

  def options(self) -> Sequence:
    return self.choices() if callable(self.choices) else self.choices

  def describe(self) -> str:
    *others, last = [repr(choice) for choice in self.options()]
    return f"one of {', '.join(others)} or {last}" if others else last

  def problem(self, value) -> str | None:
    return None if value in self.options() else self.describe()


@dataclasses.dataclass(frozen=True)
class Boolean:
  def describe(self) -> str:
    return "True or False"

  def problem(self, value) -> str | None:
    return None if isinstance(value, bool) else self.describe()


@dataclasses.dataclass(frozen=True)
class Text:
  """A string; with `nonempty`, one that names something."""

  nonempty: bool = False

  def describe(self) -> str:
    return "a non-empty string" if self.nonempty else "a string"

  def problem(self, value) -> str | None:
    return None if isinstance(value, str) and (value or not self.nonempty) else self.describe()


@dataclasses.dataclass(frozen=True)
class Optional:
  """None, or a value `rule` accepts."""

  rule: Any

  def describe(self) -> str:
    return f"None or {self.rule.describe()}"

  def problem(self, value) -> str | None:
    return None if value is None or self.rule.problem(value) is None else self.describe()


@dataclasses.dataclass(frozen=True)
class Either:
  """`value` itself (a sentinel such as -1 for "not set"), or a value `rule` accepts."""

  value: Any
  meaning: str
  rule: Any

  def describe(self) -> str:
    return f"{self.value!r} ({self.meaning}) or {self.rule.describe()}"

  def problem(self, value) -> str | None:
    if type(value) is type(self.value) and value == self.value:
      return None
    return None if self.rule.problem(value) is None else self.describe()


@dataclasses.dataclass(frozen=True)
class Each:
  """A sequence each of whose items `rule` accepts; `increasing`: strictly; `nonempty`: at least one item."""

  rule: Any
  increasing: bool = False
  nonempty: bool = False

  def describe(self) -> str:
    order = "increasing " if self.increasing else ""
    return f"a {'non-empty ' if self.nonempty else ''}sequence of {order}items, each {self.rule.describe()}"

  def problem(self, value) -> str | None:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or (self.nonempty and not value):
      return self.describe()
    if any(self.rule.problem(item) for item in value):
      return self.describe()
    if self.increasing and any(b <= a for a, b in zip(value, value[1:])):
      return self.describe()
    return None


@dataclasses.dataclass(frozen=True)
class OneOrEach:
  """One value `rule` accepts, or a non-empty sequence of them (per-channel values)."""

  rule: Any

  def describe(self) -> str:
    return f"{self.rule.describe()}, or a non-empty sequence of such"

  def problem(self, value) -> str | None:
    items = value if isinstance(value, (tuple, list)) else [value]
    return None if items and not any(self.rule.problem(item) for item in items) else self.describe()

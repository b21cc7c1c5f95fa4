"""A config file's argument (`configs/x.py:ARG`): parsed against the file's keys, checked against its choices."""

import ml_collections

from imagenet_train.errors import UserError


def parse_arg(arg: str | None, **spec) -> ml_collections.ConfigDict:
  """A config argument (`configs/x.py:ARG`) as a ConfigDict of `spec`'s keys.

  ARG is comma-separated: `key=value`, a bare boolean key (`smoke`) for True, or a bare value,
  which fills the next non-boolean key in `spec`'s order: `configs/resnet.py:50,v1,smoke` is
  depth=50, version=v1, smoke=True. Values take the type of the key's default.
  """
  values = dict(spec)
  positional = [key for key, default in spec.items() if not isinstance(default, bool)]
  for token in filter(None, (arg or "").split(",")):
    key, sep, value = token.partition("=")
    if not sep:
      if token in spec and isinstance(spec[token], bool):
        key, value = token, "true"
      elif positional:
        key, value = positional.pop(0), token
      else:
        raise UserError(f"config argument {token!r} is not one of {', '.join(spec)}: pass KEY=VALUE")
    elif key not in spec:
      raise UserError(f"config argument {key!r} is not one of {', '.join(spec)}")
    elif key in positional:
      positional.remove(key)
    default = spec[key]
    if isinstance(default, bool):
      if value.lower() not in ("true", "false", "1", "0"):
        raise UserError(f"config argument {key}={value} is not a boolean: use true or false")
      values[key] = value.lower() in ("true", "1")
    else:
      try:
        values[key] = type(default)(value)
      except ValueError:
        raise UserError(f"config argument {key}={value} is not a valid {type(default).__name__}") from None
  return ml_collections.ConfigDict(values)


def check_choice(name: str, value, choices) -> None:
  """Refuses a config argument outside `choices`, listing them."""
  if value not in choices:
    raise UserError(f"config argument {name}={value} is not one of {', '.join(map(str, choices))}")

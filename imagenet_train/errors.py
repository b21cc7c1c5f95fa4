"""The one exception type for mistakes a user can fix.

The CLI prints a `UserError` as a single line and exits with its status; any other
exception is a bug and keeps its traceback.
"""


class UserError(Exception):
  """A problem with the user's input, its message naming the problem and the fix."""

  def __init__(self, message: str, exit_code: int = 2):
    super().__init__(message)
    self.exit_code = exit_code

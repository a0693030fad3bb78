"""The one exception type for bad user input.

Anything a user can get wrong (a missing file, a malformed JSON line, an unknown config key, a
model path that does not exist) raises `UserError` with a message that names the file, line or
key and says what was expected. The CLI prints the message and exits with status 2, no traceback.
"""


class UserError(Exception):
    """Bad input from the user: the message alone must tell them what to fix."""

"""The one error type fcnlab raises for problems a user can fix.

Stage scripts catch it and print its message as a single line (no traceback), so every
message must say what was wrong, where (file or params key) and what to do about it.
"""


class FcnlabError(Exception):
    """A user-fixable problem: bad params, bad input data, missing files, no network."""

"""One exception type for problems a user can fix.

Raise `NbstudyError` with a one-line message that names the problem *and* the
fix ("dataset path /x does not exist: pass data_path= pointing at ..."). The CLI
and notebooks print it without a traceback; anything else is a bug.
"""


class NbstudyError(ValueError):
    """A user-fixable problem: bad parameter, missing file, wrong layout."""

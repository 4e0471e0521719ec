"""What users get wrong, as one family of exceptions: a bad option or config value, bad
data, an unknown model, a taken run folder, a folder that cannot be written.

revcurse.cli turns these (and what the machine refuses: OSError) into one line and exit
status 2, and running out of memory into exit status 3; any other exception is a bug of
ours: one line that says so, the traceback in a log, exit status 1. Usable from any layer.
"""


class UserError(ValueError):
    """Bad input: the message says what is wrong and where. A ValueError, as the wrong
    values of the standard library are."""

"""RunError: what stops a run that has started (too many unreadable clips, a checkpoint that cannot be written),
with one line saying why and what to do; `twostream` prints it without a traceback and exits 1. Light: no
TensorFlow, so the command line can catch it."""


class RunError(RuntimeError):
    """The run started and cannot go on; the message names the cause and the fix."""

"""The one exception every importer raises for a file it will not turn into a run."""


class CheckpointError(ValueError):
    """A checkpoint, run tree or upload that cannot be imported, with the reason.

    Raised for unsafe pickles, corrupt or truncated files, unknown layouts,
    invalid masks or weights, tickets that do not match, and hostile archives.
    The message is meant for the user as is (the CLI prints ``error: <message>``).
    """

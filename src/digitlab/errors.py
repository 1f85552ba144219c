"""One exception type for user mistakes, so the CLI can print one line instead of a traceback."""


class DigitlabError(Exception):
    """Bad input or a user mistake: the message says what went wrong and what to do."""


def warn(message: str) -> None:
    """Print a warning line to stderr (loud on purpose: these change what a run means)."""
    import sys

    print(f"digitlab: WARNING: {message}", file=sys.stderr, flush=True)

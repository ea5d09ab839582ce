"""One-line notices to the user (fallbacks, switched-off features), each printed once."""

import logging
import sys

_seen: set[str] = set()
logger = logging.getLogger("aimo3_recipe")


def notice(message: str) -> None:
    """Print `[aimo3] message` to stderr once per process and log it."""
    if message in _seen:
        return
    _seen.add(message)
    logger.info(message)
    print(f"[aimo3] {message}", file=sys.stderr, flush=True)

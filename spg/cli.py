"""Command-line plumbing shared by ``scripts/``: bad arguments end like any bad input, with one
line naming the problem and exit code 1."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, NoReturn


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr and exit code 1."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see {self.prog} --help)")


def fail(message: str) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with code 1."""
    print("error: " + " ".join(str(message).split()), file=sys.stderr)
    sys.exit(1)


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is not >= {minimum}")
        return value

    return parse


DETAIL = "spg_detail"  # a log record with this attribute set goes to log files only (``extra={DETAIL: True}``)


def console_skips_details() -> None:
    """Keep the records marked :data:`DETAIL` (tracebacks, wrapper chains, whole contracts) off the
    root logger's console handlers: they go to the run's ``train.log`` alone."""
    for handler in logging.getLogger().handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.addFilter(lambda record: not getattr(record, DETAIL, False))

"""Helpers the job modules share: building a typed config from flags, and the summary line."""

from __future__ import annotations

import argparse
import json
import sys


def make_config(parser: argparse.ArgumentParser, config_type, **values):
    """``config_type(**values)``; a validation error becomes a usage error naming the problem."""
    try:
        return config_type(**values)
    except ValueError as err:
        parser.error(str(err))


def print_summary(summary: dict) -> None:
    """The job's last stdout line: one JSON object."""
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    print(message, file=sys.stderr)

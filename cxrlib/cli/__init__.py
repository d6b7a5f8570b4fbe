"""``python -m cxrlib``: everything the dashboard does, from a terminal.

Each subcommand lives in a module of this package that has a ``register(subparsers)`` function
(:data:`COMMAND_MODULES`); a new command is a new module added there. Progress bars go to
stderr; results (run ids, tables, file names) to stdout. Listing runs and asking for a finished
run never import TensorFlow.

Exit codes (:mod:`cxrlib.cli.common`): 0 success, 1 a run failed, 2 a usage error (bad flags
or values, an unknown run id, an output refused: it exists without ``--overwrite``, or it is an
input, a dataset file or the workspace's own store), 4 a data error (a dataset, image, model or
run file that cannot be used; none of a command's inputs could be read; a write the system
refused; one line on stderr says which and why), 130 cancelled. See docs/safety.md.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from typing import Sequence

from cxrlib.cli.common import EXIT_DATA, EXIT_USAGE, UsageError, data_error_message, warn

COMMAND_MODULES = ("train", "runs", "predict", "explain", "data", "audit", "lungs", "reviews", "export",
                   "pacs", "sweep")
"""Modules of :mod:`cxrlib.cli` whose ``register(subparsers)`` adds their subcommands, in help order."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m cxrlib`` argument parser (every subcommand sets ``func``)."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"cxrlib.cli.{name}").register(sub)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """The library's own warnings (a UserWarning raised from a cxrlib module) as one
    ``warning:`` line, as :func:`common.warn` prints; every other one as Python prints it."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    if issubclass(category, UserWarning) and os.path.abspath(str(filename)).startswith(package):
        warn(str(message))
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:  # argparse's REMAINDER drops a leading "--help": pass it on whole
        argv = ["audit", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `runs | head -2`: the reader left; end quietly, as cat does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as exc:
        message = data_error_message(exc)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USAGE if type(exc).__name__ in ("RunNotFound", "OutputRefused") else EXIT_DATA

"""``audit``: the trust audit of a run (its own parser: :func:`cxrlib.audit.main`)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    """Add the ``audit`` subcommand; everything after ``audit`` goes to the audit's own parser."""
    p = sub.add_parser("audit", add_help=False,
                       help="trust audit of a run: shortcuts, leakage, where the model looks "
                            "(see `audit --help`)")
    p.add_argument("audit_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    from cxrlib.audit import main as audit_main  # noqa: PLC0415

    rest = args.audit_args[1:] if args.audit_args[:1] == ["--"] else args.audit_args
    return audit_main(rest)

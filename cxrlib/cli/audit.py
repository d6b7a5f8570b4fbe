"""``audit``: the trust audit of a run (:func:`cxrlib.audit.audit_run`; its own parser: :func:`main`)."""
from __future__ import annotations

import argparse
import json
from typing import Sequence

from cxrlib.cli.common import listed


def register(sub) -> None:
    """Add the ``audit`` subcommand; everything after ``audit`` goes to the audit's own parser."""
    p = sub.add_parser("audit", add_help=False,
                       help="trust audit of a run: shortcuts, leakage, where the model looks "
                            "(see `audit --help`)")
    p.add_argument("audit_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_audit)


def cmd_audit(args: argparse.Namespace) -> int:
    rest = args.audit_args[1:] if args.audit_args[:1] == ["--"] else args.audit_args
    return main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cxrlib audit RUN [--external DIR] [--masks DIR] [--max-films N] [--adversarial W]
    [--json FILE]``.

    Prints the verdicts and the headline numbers; with ``--json`` also writes the summary.
    """
    from cxrlib.audit.report import STEPS, audit_run  # noqa: PLC0415
    from cxrlib.cli.common import OVERWRITE_HELP, user_output  # noqa: PLC0415
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    parser = argparse.ArgumentParser(prog="cxrlib audit", description="Trust audit of a trained run.")
    parser.add_argument("run", help="run id (or unique prefix)")
    parser.add_argument("--external", help="labelled folder for the external-set check")
    parser.add_argument("--max-films", type=int, default=None, help="cap on test films for CAM / masking")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {STEPS}")
    parser.add_argument("--json", dest="json_out", help="write the summary JSON here")
    parser.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    parser.add_argument("--adversarial", type=float, default=0.0, metavar="WEIGHT",
                        help="also run leave-one-source-out with a source-adversarial head of "
                             "this gradient-reversal weight (e.g. 0.3), to compare")
    parser.add_argument("--masks", metavar="FOLDER",
                        help="lung masks of the dataset's films (cxr3-lungs or Radiography DB "
                             "layout): they win over predicted masks")
    args = parser.parse_args(argv)
    from cxrlib.core.fsutil import json_text  # noqa: PLC0415

    run = get_run(args.run)
    output = user_output(args, flag="--json", inputs=[args.external, args.masks], runs=[run])
    if args.json_out:
        output.check(args.json_out)  # before the audit's minutes of work
    report = audit_run(run, external=args.external, max_films=args.max_films,
                       steps=tuple(s.strip() for s in args.steps.split(",") if s.strip()),
                       adversarial=args.adversarial, masks=args.masks)
    for sentence in report.verdicts:
        print(f"- {sentence}")
    for film in report.skipped:
        listed(f"skipped ({film['step']})", film["rel_path"], film["reason"])
    summary = report.summary()
    print(json.dumps(summary, indent=2, default=str))
    if args.json_out:
        output.write(args.json_out, json_text(summary))
    return 0

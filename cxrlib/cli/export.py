"""``export``: a trained run's model as a deployable TensorFlow SavedModel or TFLite file."""
from __future__ import annotations

import argparse
from pathlib import Path

from cxrlib.cli.common import OVERWRITE_HELP, user_output


def register(sub) -> None:
    """Add the ``export`` subcommand."""
    from cxrlib.models.export import FORMATS  # noqa: PLC0415

    p = sub.add_parser("export", help="write a run's model as a SavedModel or a TFLite file")
    p.add_argument("run", metavar="RUN", help="run id (or unique prefix)")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from cxrlib.models.export import export_model  # noqa: PLC0415
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    run = get_run(args.run)
    output = user_output(args, runs=[run])
    output.check(args.out, folder=True)  # before the model is loaded
    target = export_model(run.load_model(), args.format, args.out, classes=run.classes,
                          preprocess=run.config.preprocess.to_dict(), run_id=run.id, output=output)
    print(f"{args.format} of run {run.id} -> {target}")
    return 0

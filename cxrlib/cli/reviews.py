"""``reviews export``: radiologists' reviews of a run (the Review page's store) as CSV."""
from __future__ import annotations

import argparse
import sys

from cxrlib.cli.common import (EXIT_DATA, OVERWRITE_HELP, STDOUT, UsageError, user_output,
                               write_table)


def register(sub) -> None:
    """Add the ``reviews`` command group (``reviews export``)."""
    p = sub.add_parser("reviews", help="radiologists' reviews of a run's films (export as CSV)")
    group = p.add_subparsers(dest="reviews_command", required=True, metavar="ACTION")
    e = group.add_parser("export", help="write a run's reviews to a CSV file",
                         description="Every review of the run, oldest first, one row each "
                                     "(a film reviewed again keeps both rows).")
    e.add_argument("run", metavar="RUN", help="run id (or unique prefix); 'all' for every run")
    e.add_argument("--out", required=True, help="CSV file to write ('-' for stdout)")
    e.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    e.set_defaults(func=cmd_export)


def _run_id(key: str, store) -> str | None:
    """The run id of ``key``: a registered run, or (the run was deleted since) an exact id or
    unique prefix among the runs that have reviews. ``None`` means every run."""
    from cxrlib.runs.registry import RunNotFound, get_run  # noqa: PLC0415

    if key == "all":
        return None
    try:
        return get_run(key).id
    except RunNotFound:
        reviewed = [r for r in store.run_ids() if r.startswith(key.strip())]
        if len(reviewed) == 1:
            return reviewed[0]
        raise


def cmd_export(args: argparse.Namespace) -> int:
    from cxrlib.reviews.store import ReviewStore, ReviewStoreError  # noqa: PLC0415

    try:
        return _export(args, ReviewStore)  # opened once the output is checked
    except ReviewStoreError as exc:  # a damaged or newer database: about the user's data
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA


def _export(args: argparse.Namespace, open_store) -> int:
    from cxrlib.runs.registry import RunNotFound, get_run  # noqa: PLC0415

    if args.out.endswith(("/", "\\")):
        raise UsageError(f"--out must name a file, not a folder: {args.out}")
    try:  # a registered run: its dataset is guarded too (one whose reviews outlived it has none)
        runs = [] if args.run == "all" else [get_run(args.run)]
    except RunNotFound:
        runs = []
    output = user_output(args, runs=runs)
    if args.out != STDOUT:
        output.check(args.out)  # before the database is opened (or made)
    store = open_store()
    run_id = _run_id(args.run, store)
    if args.out == STDOUT:
        from cxrlib.core.csvio import csv_text  # noqa: PLC0415

        write_table(output, args.out, csv_text(store.reviews(run_id), for_people=True))
        return 0
    n = store.export_csv(args.out, run_id, output=output)
    what = "every run" if run_id is None else f"run {run_id}"
    print(f"{n} reviews of {what} -> {args.out}")
    return 0

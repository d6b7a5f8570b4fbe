"""``runs``, ``cancel`` and ``delete``: the run registry from a terminal."""
from __future__ import annotations

import argparse

from cxrlib.cli.common import print_json, print_table, warn
from cxrlib.core import paths


def register(sub) -> None:
    """Add the ``runs``, ``cancel`` and ``delete`` subcommands."""
    p = sub.add_parser("runs", help="list runs with their state and headline metrics")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_runs)
    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--grace", type=float, default=15.0, help="seconds before SIGTERM (default 15)")
    p.set_defaults(func=cmd_cancel)
    p = sub.add_parser("delete", help="delete a finished, failed, cancelled or damaged run's folder")
    p.add_argument("run", metavar="RUN")
    p.set_defaults(func=cmd_delete)


def cmd_runs(args: argparse.Namespace) -> int:
    from cxrlib.cli.train import headline_row  # noqa: PLC0415
    from cxrlib.runs.registry import HEADLINE_COLUMNS, headline, list_runs  # noqa: PLC0415

    rows = [headline(r) for r in list_runs()]
    if args.json:
        print_json(rows)
    elif not rows:
        print(f"no runs in {paths.runs_dir()}")
    else:
        table = [dict(r, state=r["queue"] or r["state"]) for r in map(headline_row, rows)]
        print_table([{c: "-" if r[c] is None else r[c] for c in HEADLINE_COLUMNS} for r in table])
    for row in rows:
        if row.get("problem"):
            warn(f"{row['problem']}; `python -m cxrlib delete {row['id']}` removes it")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from cxrlib.runs.runner import cancel  # noqa: PLC0415

    status = cancel(args.run, grace_s=args.grace)
    print(f"{args.run}: {status.get('state')}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from cxrlib.runs.registry import delete_run, get_run  # noqa: PLC0415

    run = get_run(args.run)
    target = delete_run(run)
    if target is None:
        print(f"deleted run {run.id}")
    else:
        print(f"removed the link {run.folder} (run {run.id}); the folder it pointed to, {target}, "
              "was not deleted")
    return 0

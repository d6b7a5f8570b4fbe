"""``sweep``: search preprocessing settings and shortcut remedies; choose by leave-one-source-out.

``python -m cxrlib sweep SPEC.json`` runs (or resumes) the sweep the file defines
(:mod:`cxrlib.sweep.space`); without a file, ``--name`` with ``--grid`` / ``--set`` flags
define it. Every candidate is an ordinary cached run; the rule (``--selection``) is recorded
before anything trains, and only the chosen run's test figures are read. ``--background``
returns at once (follow it with ``sweep --status NAME``, stop it with ``sweep --cancel NAME``);
``--csv PATH`` writes the leaderboard. Exit codes: 0 done, 1 a candidate failed, 2 usage,
4 data, 130 cancelled.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cxrlib.cli.common import EXIT_CANCELLED, EXIT_FAILED, OVERWRITE_HELP, UsageError, user_output
from cxrlib.sweep.space import SELECTIONS


def register(sub) -> None:
    p = sub.add_parser("sweep", help="search preprocessing and remedies, choose by leave-one-source-out")
    p.add_argument("spec", nargs="?", type=Path, help="sweep spec (JSON; YAML with PyYAML)")
    p.add_argument("--name", help="sweep name (default: the spec file's name)")
    p.add_argument("--data", help="dataset folder (overrides the spec's)")
    p.add_argument("--selection", choices=SELECTIONS,
                   help="loso: best expected accuracy at an unseen source (ties: val loss); "
                        "validation: lowest val loss; auto (default): loso with >= 3 sources")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.FIELD=V1,V2",
                   help="a searched setting (values comma-separated, or a JSON list)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="a setting every candidate shares")
    p.add_argument("--external", help="a labelled folder from elsewhere, scored for every candidate "
                                      "and never used for the choice")
    p.add_argument("--trials", type=int, help="at most this many candidates")
    p.add_argument("--minutes", type=float, help="start no candidate after this many minutes")
    p.add_argument("--background", action="store_true", help="run detached and return")
    p.add_argument("--status", metavar="NAME", help="print a sweep's status and exit")
    p.add_argument("--cancel", metavar="NAME", help="ask a running sweep to stop")
    p.add_argument("--csv", type=Path, help="write the leaderboard here (refuses to overwrite)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.set_defaults(func=cmd_sweep)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pair(item: str, many: bool):
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise UsageError(f"{item!r}: write SECTION.FIELD=VALUE")
    if not many:
        return key, _value(raw)
    values = _value(raw) if raw.startswith("[") else [_value(v) for v in raw.split(",")]
    if not isinstance(values, list) or not values:
        raise UsageError(f"{item!r}: give a comma-separated list or a JSON list of values")
    return key, values


def spec_from_args(args: argparse.Namespace):
    from cxrlib.sweep.space import SweepSpec, candidates, load_spec  # noqa: PLC0415

    try:
        if args.spec is not None:
            spec = load_spec(args.spec)
        elif args.name:
            spec = SweepSpec(name=args.name)
        else:
            raise UsageError("give a sweep spec file, or --name with --grid / --set")
        d = spec.to_dict()
        d["grid"].update(dict(_pair(g, True) for g in args.grid))
        d["fixed"].update(dict(_pair(s, False) for s in args.set))
        for key in ("name", "data", "selection", "trials", "minutes", "external"):
            if getattr(args, key) is not None:
                d[key] = getattr(args, key)
        spec = SweepSpec.from_dict(d)
        candidates(spec)  # every setting names a config field and a value it accepts
        return spec
    except OSError as exc:
        raise UsageError(f"{exc.filename}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def cmd_sweep(args: argparse.Namespace) -> int:
    from cxrlib.sweep import study  # noqa: PLC0415

    if args.status or args.cancel:
        name = args.status or args.cancel
        if args.cancel:
            if not study.request_cancel(name):
                raise UsageError(f"no sweep named {name!r}")
            print(f"cancel requested for sweep {name}")
            return 0
        status = study.sweep_status(name)
        if status is None:
            raise UsageError(f"no sweep named {name!r}")
        print(json.dumps(status, sort_keys=True))
        return 0
    spec = spec_from_args(args)
    from cxrlib.sweep.space import candidates  # noqa: PLC0415

    # never the spec file, nor a file of the dataset every candidate trains on or of --external
    output = user_output(args, flag="--csv", inputs=[args.spec],
                         datasets=[*{c.config.data.root for c in candidates(spec)}, spec.external])
    if args.csv is not None:
        output.check(args.csv)  # before anything trains: the one rule of user-named outputs
    if args.background:
        pid = study.start_background(spec)
        print(f"sweep {spec.name}\nfolder {study.sweep_folder(spec.name)}\npid {pid}")
        return 0
    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415

    try:
        with ProgressBar("sweep") as bar:
            result = study.run_sweep(spec, progress=lambda s: bar.update(
                s.get("done", 0), s.get("total", 0), s.get("message") or ""))
    except study.SweepCancelled as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except RuntimeError as exc:  # a candidate's run failed
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    board = study.leaderboard(result["candidates"])
    print(board.drop(columns=[c for c in board if c.startswith("loso[")]).to_string(index=False))
    print(f"selection {result['selection']}\nchosen {result['chosen']} ({result['chosen_name']})\n"
          f"chosen_test_accuracy {result['chosen_test_accuracy']}\n"
          f"chosen_test_macro_auc {result['chosen_test_macro_auc']}")
    if args.csv is not None:
        from cxrlib.core.csvio import csv_text  # noqa: PLC0415

        output.write(args.csv, csv_text(board, for_people=True))
        print(f"leaderboard {args.csv}")
    return 0

"""``scan``: summarise a dataset folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrlib.cli.common import listed, scan, user_output


def register(sub) -> None:
    """Add the ``scan`` subcommand."""
    p = sub.add_parser("scan", help="summarise a dataset folder")
    p.add_argument("root", metavar="DIR", type=Path)
    p.add_argument("--bacterial", choices=("exclude", "class"), default="exclude")
    p.add_argument("--manifest", type=Path, help="also write the manifest CSV here (outside the "
                                                  "dataset folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --manifest file")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    from cxrlib.data.stats import dataset_stats  # noqa: PLC0415

    if args.manifest:  # checked before any work (docs/safety.md): a refused output costs no scan
        from cxrlib.core.csvio import csv_text  # noqa: PLC0415
        from cxrlib.data.roots import check_allowed  # noqa: PLC0415

        # outside the dataset folder (resolved as the scan resolves it): inside, it could replace
        # one of its files (its manifest.csv, a film, a mask) or become the manifest the next scan reads
        out = user_output(args, flag="--manifest", datasets=[check_allowed(args.root)])
        out.check(args.manifest)
    dataset = scan(args.root, args.bacterial)
    print(f"{dataset.root}  layout {dataset.layout}  fingerprint {dataset.fingerprint}  "
          f"images {len(dataset.manifest)}  unreadable {len(dataset.problems)}")
    print(dataset_stats(dataset).to_string(index=False))
    for _, row in dataset.problems.head(20).iterrows():
        listed("unreadable", row["path"], row["reason"])
    if len(dataset.problems) > 20:
        print(f"unreadable: ... and {len(dataset.problems) - 20} more (the app's Dataset page "
              "lists them all)", file=sys.stderr)
    if args.manifest:
        out.write(args.manifest, csv_text(dataset.manifest, for_people=False))  # read back as a manifest
    return 0

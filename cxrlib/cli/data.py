"""``scan``: summarise a dataset folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrlib.cli.common import scan


def register(sub) -> None:
    """Add the ``scan`` subcommand."""
    p = sub.add_parser("scan", help="summarise a dataset folder")
    p.add_argument("root", metavar="DIR", type=Path)
    p.add_argument("--bacterial", choices=("exclude", "class"), default="exclude")
    p.add_argument("--manifest", type=Path, help="also write the manifest CSV here")
    p.set_defaults(func=cmd_scan)


def cmd_scan(args: argparse.Namespace) -> int:
    from cxrlib.data.stats import dataset_stats  # noqa: PLC0415

    dataset = scan(args.root, args.bacterial)
    print(f"{dataset.root}  layout {dataset.layout}  fingerprint {dataset.fingerprint}  "
          f"images {len(dataset.manifest)}  unreadable {len(dataset.problems)}")
    print(dataset_stats(dataset).to_string(index=False))
    for _, row in dataset.problems.head(20).iterrows():
        print(f"unreadable: {row['path']}: {row['reason']}", file=sys.stderr)
    if len(dataset.problems) > 20:
        print(f"unreadable: ... and {len(dataset.problems) - 20} more (the app's Dataset page "
              "lists them all)", file=sys.stderr)
    if args.manifest:
        from cxrlib.core.fsutil import write_text_atomic  # noqa: PLC0415

        _refuse_dataset_file(Path(args.manifest), dataset)
        write_text_atomic(args.manifest, dataset.manifest.to_csv(index=False))
    return 0


def _refuse_dataset_file(target: Path, dataset) -> None:
    """``--manifest`` is written outside the dataset folder: inside it, it could replace a file
    of the dataset (its manifest.csv, a film, a mask) or become the manifest the next scan
    reads. The folder's links are followed, so a link cannot carry the write into the dataset;
    a link named as the target is replaced itself, never written through."""
    import os  # noqa: PLC0415

    from cxrlib.cli.common import UsageError  # noqa: PLC0415
    from cxrlib.data.roots import is_inside  # noqa: PLC0415

    # the atomic write replaces the path's last part (a link itself, never its target), so
    # where it lands is the real folder plus the name
    lands = os.path.join(os.path.realpath(target.parent), target.name)
    if is_inside(lands, os.path.realpath(dataset.root)):
        raise UsageError(f"--manifest {target} would write over or into the dataset in "
                         f"{dataset.root}; write the manifest outside that folder")

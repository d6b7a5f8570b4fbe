"""``lungs train | predict | eval``: the lung segmenter from a terminal."""
from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path

from cxrlib.cli.common import (OVERWRITE_HELP, UsageError, input_files, listed, output_names,
                               print_table, user_output)
from cxrlib.core import paths
from cxrlib.core.csvio import csv_text
from cxrlib.core.fsutil import write_text_atomic


def register(sub) -> None:
    """Add the ``lungs`` subcommand and its ``train``, ``predict`` and ``eval`` subcommands."""
    p = sub.add_parser("lungs", help="the lung segmenter: retrain, predict masks, score against masks")
    lungs = p.add_subparsers(dest="lungs_command", required=True, metavar="ACTION")

    t = lungs.add_parser("train", help="retrain the segmenter on films with human masks")
    _data_args(t)
    t.add_argument("--out", type=Path, default=None,
                   help="output folder (default: models/lungs in the workspace; the shipped "
                        "weights are replaced only when this names cxrlib/lungs/assets)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace the weights and metrics already in a named --out (default: refuse)")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default 30)")
    t.add_argument("--seed", type=int, default=0, help="split, initialisation and augmentation seed")
    t.set_defaults(func=cmd_train)

    q = lungs.add_parser("predict", help="write a 0/255 lung mask PNG per film")
    q.add_argument("files", nargs="+", type=Path, metavar="FILES", help="films, or folders of films")
    q.add_argument("--out", type=Path, required=True, help="folder for the mask PNGs")
    q.add_argument("--weights", type=Path, default=None, help="a weights asset (default: shipped)")
    q.add_argument("--overwrite", action="store_true",
                   help="replace files of the same name already in --out (default: refuse; "
                        "never a film of this command)")
    q.set_defaults(func=cmd_predict)

    e = lungs.add_parser("eval", help="Dice of predicted masks against human masks, per class")
    _data_args(e)
    e.add_argument("--weights", type=Path, default=None, help="a weights asset (default: shipped)")
    e.add_argument("--all", action="store_true",
                   help="score every masked film, also those of the groups the weights were trained "
                        "or validated on (default: leave those out)")
    e.add_argument("--per-film", type=Path, default=None, metavar="CSV", help="write per-film Dice here")
    e.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    e.set_defaults(func=cmd_eval)


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="the films' dataset folder")
    p.add_argument("--masks", type=Path, default=None,
                   help="their masks: cxr3-lungs layout (255 lung, 127 ignore; manifest.csv optional) "
                        "or Radiography DB masks/ folders; default: the dataset's own masks/")


def cmd_train(args: argparse.Namespace) -> int:
    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415
    from cxrlib.lungs.network import ASSET_NAME  # noqa: PLC0415
    from cxrlib.lungs.train import LungTrainConfig, train_lung_model  # noqa: PLC0415

    if args.epochs is not None and args.epochs < 1:
        raise UsageError(f"--epochs must be at least 1, got {args.epochs}")
    cfg = LungTrainConfig(seed=args.seed, **({"epochs": args.epochs} if args.epochs else {}))
    out_default = paths.workspace() / "models" / "lungs"
    out = args.out or out_default
    output = user_output(args, datasets=[args.data, args.masks])  # nothing lands in them
    files = [f"{ASSET_NAME}.npz", f"{ASSET_NAME}.json", "metrics.json"]
    named = Path(out).resolve() != out_default.resolve()  # the default is the workspace's own
    if named:
        output.check(args.out, folder=True)
        for name in files:  # before the minutes of training
            output.check(args.out / name)
    command = "python -m cxrlib " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["lungs"] else ""
    with ProgressBar(f"train lung segmenter ({cfg.epochs} epochs)") as bar:
        record = train_lung_model(args.data, args.masks, out, cfg, progress=bar.update, command=command)
    metrics = {k: record[k] for k in ("train_s", "best_epoch", "quality_threshold", "rows", "val", "test")}
    text = json.dumps(metrics, indent=1) + "\n"
    if named:
        output.write(Path(out) / "metrics.json", text)
    else:
        write_text_atomic(Path(out) / "metrics.json", text)
    print(f"weights: {Path(out) / files[0]}  metrics: {Path(out) / 'metrics.json'}")
    print(json.dumps({"dice_mean": record["test"]["dice_mean"],
                      "dice_per_class": record["test"]["dice_per_class"], "n": record["test"]["n"],
                      "train_s": record["train_s"], "out": str(out)}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import cv2  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415
    from cxrlib.data.imageio import ImageReadError, read_film  # noqa: PLC0415
    from cxrlib.lungs.segmenter import load_segmenter  # noqa: PLC0415

    for item in args.files:  # an explicit film that is not there: say so before any work
        if not item.exists() and not item.is_symlink():
            raise FileNotFoundError(errno.ENOENT, "no such film file or folder", str(item))
    files, _ = input_files(args.files)  # the CXR_DATA_ROOTS check and the folder rules of predict
    # flat (no folders given): one mask per film name, long ones shortened, all kept apart
    names = [f"{name}.png" for name in output_names([], files)]
    # one rule for every output (cxrlib.core.outputs.UserOutput): a mask never replaces a film
    # of this command, nor, without --overwrite, any file already there (e.g. human masks)
    out = user_output(args, inputs=files)
    out.check(args.out, folder=True)
    for name in names:
        out.check(args.out / name)
    out.folder(args.out)
    segmenter = load_segmenter(args.weights)
    rows = []
    with ProgressBar(f"lung masks of {len(files)} films") as bar:
        for start in range(0, len(files), 16):
            chunk, films = [], []
            for path, name in zip(files[start:start + 16], names[start:start + 16]):
                try:
                    films.append(read_film(path).pixels)
                    chunk.append((path, name))
                except ImageReadError as exc:  # listed, as predict lists it; the others go on
                    listed("unreadable", path, exc.reason)
            segs = segmenter.segment(films) if films else []
            for (path, name), seg in zip(chunk, segs):
                out.write(args.out / name, cv2.imencode(".png", seg.mask.astype(np.uint8) * 255)[1].tobytes())
                rows.append({"film": str(path), "mask": str(args.out / name), "quality": f"{seg.quality:.3f}",
                             "flagged": "yes" if seg.flagged else "no"})
            bar.callback(min(start + 16, len(files)), len(files))
    if not rows:
        raise ValueError(f"none of the {len(files)} films could be read (listed above)")
    print_table(rows)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415
    from cxrlib.lungs.data import paired_rows, unseen_by  # noqa: PLC0415
    from cxrlib.lungs.evaluate import evaluate_rows, summarise  # noqa: PLC0415
    from cxrlib.lungs.network import read_asset_meta  # noqa: PLC0415
    from cxrlib.lungs.segmenter import load_segmenter  # noqa: PLC0415

    output = user_output(args, flag="--per-film", datasets=[args.data, args.masks])
    if args.per_film:
        output.check(args.per_film)  # before any work
    rows = paired_rows(args.data, args.masks)
    meta = read_asset_meta(args.weights)
    unseen = unseen_by(rows, meta)
    recorded = bool(meta.get("groups") or meta.get("train_files"))
    held_out = recorded and not args.all
    if held_out:
        scope = (f"held-out groups only: {int(unseen.sum())} of {len(rows)} masked films; "
                 f"{int((~unseen).sum())} in groups the weights were trained or validated on "
                 "are left out (--all keeps them)")
        rows = rows[unseen].reset_index(drop=True)
    else:
        scope = "all masked films" + ("" if args.all else " (the weights record no training groups)")
    if rows.empty:
        raise ValueError("no masked film is left to score (all are in the training groups; try --all)")
    print(f"scoring {scope}")
    with ProgressBar(f"lung masks of {len(rows)} films") as bar:
        per_film = evaluate_rows(rows, load_segmenter(args.weights), progress=bar.callback)
    if per_film.empty:
        raise ValueError(f"none of the {len(rows)} film / mask pairs could be read (listed above)")
    if args.per_film:
        output.write(args.per_film, csv_text(per_film, for_people=True))
    summary = summarise(per_film)
    print_table([{"class": k, "films": summary["n_per_class"][k], "dice": f"{v:.4f}"}
                 for k, v in summary["dice_per_class"].items()]
                + [{"class": "all", "films": summary["n"], "dice": f"{summary['dice_mean']:.4f}"}])
    print(f"flagged by the quality signal: {summary['flagged_share']:.1%} (Dice flagged "
          f"{summary['flagged_dice_mean']} vs unflagged {summary['unflagged_dice_mean']})")
    print(json.dumps({**summary, "scope": "held-out groups" if held_out else "all"}))
    return 0

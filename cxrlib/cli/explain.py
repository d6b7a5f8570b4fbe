"""``explain``: CAM overlays and a table for image files or a whole folder, batch by batch."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrlib.cli.common import (EXIT_DATA, OVERWRITE_HELP, UsageError, input_files,
                               new_counts, output_names, tally, user_output, warned_note)
from cxrlib.cli.progress import ProgressBar
from cxrlib.core.config import ExplainConfig
from cxrlib.core.csvio import RowWriter

CSV_NAME = "explanations.csv"


def _method_name(value: str) -> str:
    from cxrlib.explain.methods import CAM_METHODS  # noqa: PLC0415  (only when the command runs)

    if value not in CAM_METHODS:
        raise argparse.ArgumentTypeError(f"unknown CAM method {value!r}; choose one of "
                                         f"{', '.join(CAM_METHODS)}")
    return value


def register(sub) -> None:
    """Add the ``explain`` subcommand."""
    p = sub.add_parser(
        "explain", help="CAM overlays (native resolution) and a CSV for image files or a folder",
        description=f"Writes, under --out, one overlay PNG per film at the film's own resolution "
                    f"(sub-folders mirrored) and {CSV_NAME}: per film the class probabilities, the "
                    f"explained class, whether the map is flat (then no overlay: a flat map is not "
                    f"an explanation), the deletion score (as on the Explain page) and the share "
                    f"of the heatmap inside the lungs. That share needs the learned lung "
                    f"segmenter's weights (cxrlib/lungs/assets); without them the column is empty "
                    f"and the lung_mask column says so. Films are read, explained and written one "
                    f"batch at a time; unreadable files get a row with the reason.")
    p.add_argument("model", metavar="RUN", help="run id (or prefix), run folder, or .keras file")
    p.add_argument("inputs", nargs="*", metavar="FILES_OR_FOLDER")
    p.add_argument("--out", type=Path, help="folder for the overlays and the CSV (required for "
                                            "files; optional with --pacs)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--method", type=_method_name, default=ExplainConfig().method,
                   help=f"a registered CAM method (default {ExplainConfig().method}, chosen by "
                        "measurement: docs/heatmaps.md; an unknown name lists them)")
    p.add_argument("--layer", help="layer to explain (default: the method's own default layer)")
    p.add_argument("--target", help="class name or index to explain (default: the predicted class)")
    p.add_argument("--alpha", type=float, default=0.4, help="heatmap opacity (default 0.4)")
    p.add_argument("--colormap", default="jet", help="default jet")
    p.add_argument("--contour", action="store_true", help="contour lines instead of a filled map")
    p.add_argument("--deletion-steps", type=int, default=20,
                   help="steps of the deletion test (default 20, about 84 forward passes a "
                        "film); 0 skips it")
    p.add_argument("--batch-size", type=int, default=16,
                   help="films in memory at once (default 16)")
    p.add_argument("--dicom-out", type=Path, metavar="DIR",
                   help="also write each DICOM film's results as DICOM objects into DIR/<film>/: "
                        "lung mask SEG, heatmap SEG, overlay Secondary Capture, Structured Report "
                        "(docs/pacs.md)")
    from cxrlib.cli.pacs import add_source_arguments  # noqa: PLC0415

    add_source_arguments(p)
    p.add_argument("--send", action="store_true",
                   help="with --pacs: store the DICOM results on the PACS (STOW-RS)")
    p.set_defaults(func=cmd_explain)


def _target(value: str | None, classes) -> int | None:
    if value is None:
        return None
    names = list(classes)
    if value in names:
        return names.index(value)
    if value.lstrip("-").isdigit() and 0 <= int(value) < len(names):
        return int(value)
    raise UsageError(f"--target {value!r} is not a class of this run ({', '.join(names)}) "
                     f"or an index 0-{len(names) - 1}")


def cmd_explain(args: argparse.Namespace) -> int:
    from cxrlib.cli.predict import _resolve_model  # noqa: PLC0415
    from cxrlib.core.config import ExplainConfig  # noqa: PLC0415
    from cxrlib.explain.batch import (BatchSettings, columns, explain_files,  # noqa: PLC0415
                                      lung_segmenter, overlay_name)

    from cxrlib.explain.overlay import COLORMAPS  # noqa: PLC0415

    if args.batch_size < 1 or args.deletion_steps < 0 or not 0.0 <= args.alpha <= 1.0:
        raise UsageError("--batch-size must be >= 1, --deletion-steps >= 0, --alpha in [0, 1]")
    if args.colormap not in COLORMAPS:
        raise UsageError(f"--colormap {args.colormap!r} is not one of {', '.join(COLORMAPS)}")
    from cxrlib.cli.pacs import uses_pacs  # noqa: PLC0415

    pacs = uses_pacs(args)
    if args.send and not pacs:
        raise UsageError("--send stores results on a PACS: it needs --pacs URL --study UID")
    if args.out is None and not (pacs and (args.send or args.dicom_out)):
        raise UsageError("--out is required (with --pacs: --out, --dicom-out or --send)")
    source = _resolve_model(args.model)
    look = ExplainConfig(method=args.method, layer=args.layer,
                         target=_target(args.target, source.classes), alpha=args.alpha,
                         colormap=args.colormap, contour=args.contour)
    settings = BatchSettings(explain=look, deletion_steps=args.deletion_steps,
                             batch_size=args.batch_size)
    if pacs:
        from cxrlib.cli.explain_dicom import explain_pacs  # noqa: PLC0415

        output = user_output(args, runs=[source])
        if args.out is not None:
            output.check(args.out, folder=True)
            output.check(args.out / CSV_NAME)

        def write(out, fieldnames, rows, bar):
            return _write(out, fieldnames, rows, bar, output)

        return explain_pacs(source, args, settings, output=output, write=write, csv_name=CSV_NAME)
    files, left_out = input_files(args.inputs)
    names = output_names(args.inputs, files)
    output = user_output(args, inputs=[*args.inputs, *files], runs=[source])
    output.check(args.out, folder=True)
    for path in [args.out / CSV_NAME] + [args.out / overlay_name(n, args.method) for n in names]:
        output.check(path)  # before any work: an overlay never replaces a film, nor a file unasked
    lungs, why_not = lung_segmenter()
    if lungs is None:
        print(f"note: {why_not}", file=sys.stderr)
    on_film = None
    if args.dicom_out is not None:
        from cxrlib.cli.explain_dicom import DicomFolder, results_output  # noqa: PLC0415

        on_film = DicomFolder(source, args.dicom_out, files, names,
                              results_output(args, source, inputs=[*args.inputs, *files]))
    bar = ProgressBar(f"explain ({args.method})")
    rows = explain_files(source, files, names, args.out, settings, progress=bar.callback,
                         on_film=on_film, output=output)
    counts = _write(args.out, columns(source.classes), rows, bar, output)
    print(f"{counts['explained']} explained, {counts['flat']} flat (no overlay), "
          f"{counts['unreadable']} unreadable, {len(left_out)} left out"
          f"{warned_note(counts['warned'])} -> {args.out / CSV_NAME}")
    if on_film is not None:
        on_film.report()
    if counts["flat"]:
        print("note: a flat map has no contrast at this layer; a layer the method is valid on "
              "(its default, without --layer) usually gives one", file=sys.stderr)
    return EXIT_DATA if counts["unreadable"] == len(files) else 0  # the rule: nothing read is exit 4


def _write(out: Path, fieldnames: list[str], rows, bar, output) -> dict[str, int]:
    """Stream ``rows`` into ``out/explanations.csv`` (renamed into place when complete); a
    missing value (NaN, None) is an empty cell."""
    counts = new_counts()
    try:
        with output.path(out / CSV_NAME) as part, open(part, "w", newline="", encoding="utf-8") as fh:
            writer = RowWriter(fh, fieldnames, for_people=True)
            for row in rows:
                writer.write(row)
                fh.flush()
                tally(row, counts)
    finally:
        bar.close()
    return counts

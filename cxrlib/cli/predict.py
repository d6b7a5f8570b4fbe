"""``predict`` and ``evaluate``: a trained model on image files or a labelled folder."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrlib.cli.common import (EXIT_DATA, OVERWRITE_HELP, STDOUT, UsageError, input_files,
                               listed, user_output, warn, warned_note, write_table)
from cxrlib.cli.progress import ProgressBar
from cxrlib.core.config import PreprocessConfig, RunConfig


def register(sub) -> None:
    """Add the ``predict`` and ``evaluate`` subcommands."""
    p = sub.add_parser("predict", help="per-class probabilities of image files or a folder")
    p.add_argument("model", metavar="MODEL_OR_RUN", help="run id (or prefix), run folder, or .keras file")
    p.add_argument("inputs", nargs="*", metavar="FILES_OR_FOLDER")
    p.add_argument("--out", type=Path, required=True, help="CSV to write ('-' for stdout)")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--batch-size", type=int, default=32)
    from cxrlib.cli.pacs import add_source_arguments  # noqa: PLC0415

    add_source_arguments(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="a trained run on its test split or another labelled "
                                         "folder, overall and by subgroup")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data", type=Path, help="labelled dataset folder (default: the run's own "
                                             "test split)")
    p.add_argument("--by", action="append", default=[], metavar="COLUMN",
                   help="subgroups by a manifest column or derived attribute (source, view, notes, "
                        "width, height, megapixels, format, jpeg_quality, small_copy...); repeatable")
    p.add_argument("--out-dir", required=True, type=Path,
                   help="gets metrics.json, predictions.csv and (with --by) subgroups.csv")
    p.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per subgroup")
    p.add_argument("--batch-size", type=int, default=32)
    p.set_defaults(func=cmd_evaluate)


class _ModelFile:
    """A bare ``.keras`` file outside a run: default preprocessing at the model's input size."""

    def __init__(self, path: Path):
        from cxrlib.core.classes import CLASSES, TASK_CLASSES  # noqa: PLC0415
        from cxrlib.models.io import load_model  # noqa: PLC0415

        self.model = load_model(path)
        self.id = path.stem
        n_out = int(self.model.output_shape[-1])
        # 2 outputs: the binary task; anything else is taken as the 3 classes, and
        # check_model_fits refuses a model whose output count fits neither.
        self.classes = TASK_CLASSES["binary"] if n_out == 2 else CLASSES
        size = int(self.model.input_shape[1])
        self.config = RunConfig(preprocess=PreprocessConfig(size=size))
        from cxrlib.evaluation.predict import check_model_fits  # noqa: PLC0415

        check_model_fits(self.model, self.config.preprocess, self.classes)  # before the note
        print(f"note: {path} is not in a run folder; using preprocessing {self.config.preprocess.steps} "
              f"at {size} px and classes {list(self.classes)}", file=sys.stderr)

    def load_model(self):
        return self.model


def _resolve_model(ref: str):
    from cxrlib.runs.registry import get_run  # noqa: PLC0415
    from cxrlib.runs.run import Run  # noqa: PLC0415

    path = Path(ref)
    if path.is_dir() and (path / "config.json").is_file():
        return Run(path)
    if path.is_file():
        if (path.parent / "config.json").is_file():
            return Run(path.parent)
        return _ModelFile(path)
    return get_run(ref)


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrlib.core.csvio import csv_text  # noqa: PLC0415
    from cxrlib.evaluation.predict import predict_paths  # noqa: PLC0415

    from cxrlib.cli.pacs import uses_pacs  # noqa: PLC0415

    if uses_pacs(args):
        return _predict_pacs(args)
    source = _resolve_model(args.model)
    files, left_out = input_files(args.inputs)
    out = user_output(args, inputs=[*args.inputs, *files], runs=[source])
    if str(args.out) != STDOUT:
        out.check(args.out)  # before any work
    bar = ProgressBar("predict")
    try:
        table = predict_paths(source, files, batch_size=args.batch_size, progress=bar.callback)
    finally:
        bar.close()
    where = write_table(out, args.out, csv_text(table, for_people=True))
    bad = _report(table, where, f"{len(left_out)} left out")
    return EXIT_DATA if bad == len(table) else 0  # the rule: nothing read is exit 4


def _report(table, where: str, *more: str) -> int:
    """Name each unreadable film and each film read with a decoder warning on stderr, then the
    counts (on stderr when the table went to stdout); returns the unreadable count."""
    bad, odd = table[table["error"] != ""], table[table["warning"] != ""]
    for _, row in bad.iterrows():
        listed("unreadable", row["path"], row["error"])
    for _, row in odd.iterrows():
        listed("warning", row["path"], row["warning"])
    counts = ", ".join([f"{len(table) - len(bad)} predicted", f"{len(bad)} unreadable", *more])
    print(f"{counts}{warned_note(len(odd))} -> {where}",
          file=sys.stderr if where == "stdout" else sys.stdout)
    return len(bad)


def _predict_pacs(args: argparse.Namespace) -> int:
    """``predict --pacs URL --study UID``: the study's CR/DX films, retrieved into memory."""
    from cxrlib.cli.pacs import study_films  # noqa: PLC0415
    from cxrlib.core.csvio import csv_text  # noqa: PLC0415
    from cxrlib.dicom.pipeline import predict_datasets  # noqa: PLC0415

    source = _resolve_model(args.model)
    out = user_output(args, runs=[source])
    if str(args.out) != STDOUT:
        out.check(args.out)  # before the study is retrieved: the one rule of user-named outputs
    _, _, datasets = study_films(args)
    table = predict_datasets(source, datasets, batch_size=args.batch_size)
    _report(table, write_table(out, args.out, csv_text(table, for_people=True)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cxrlib.core.csvio import csv_text  # noqa: PLC0415
    from cxrlib.core.fsutil import json_text  # noqa: PLC0415
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    run = get_run(args.run)
    out = user_output(args, flag="--out-dir", inputs=[args.data], runs=[run])
    names = ["metrics.json", "predictions.csv"] + (["subgroups.csv"] if args.by else [])
    out.check(args.out_dir, folder=True)
    for name in names:  # before any work
        out.check(args.out_dir / name)
    metrics, frame = _evaluated(run, args)
    if args.by:
        from cxrlib.evaluation.subgroups import subgroup_analysis, subgroups_csv  # noqa: PLC0415

        analysis = subgroup_analysis(frame, run.classes, args.by, n_boot=args.n_boot)
        if analysis.skipped:  # refused before the folder is made: nothing left behind
            raise UsageError("; ".join(analysis.skipped.values()))
        table = analysis.table
        metrics["subgroups"] = {"by": list(args.by), "overall_ci": [analysis.overall["ci_low"],
                                                                   analysis.overall["ci_high"]],
                                "flagged": int(table["flagged"].sum()), "worst": analysis.worst(3)}
    out.folder(args.out_dir)
    if args.by:
        out.write(args.out_dir / "subgroups.csv", subgroups_csv(analysis))
    out.write(args.out_dir / "metrics.json", json_text(metrics))
    out.write(args.out_dir / "predictions.csv", csv_text(frame, for_people=True))
    auc = (metrics.get("auc") or {}).get("macro")
    print(f"accuracy {metrics['accuracy']:.4f}  macro_auc {'-' if auc is None else f'{auc:.4f}'}  "
          f"n {metrics['n']}  -> {args.out_dir}")
    if args.by:
        for row in table.head(5).itertuples():
            mark = "  FLAGGED" if row.flagged else ""
            print(f"  {row.column}={row.value}: accuracy {row.accuracy:.3f} "
                  f"[{row.ci_low:.3f}, {row.ci_high:.3f}] n {row.n}{mark}")
    return 0


def _evaluated(run, args: argparse.Namespace):
    """Metrics and predictions (with every manifest column) of ``--data`` or the test split."""
    from cxrlib.data.datasets import DatasetError, scan_dataset  # noqa: PLC0415
    from cxrlib.evaluation.predict import evaluate_folder, evaluate_test_split  # noqa: PLC0415
    from cxrlib.evaluation.subgroups import attach_manifest  # noqa: PLC0415

    if args.data is not None:  # evaluate_folder keeps the folder's manifest columns
        bar = ProgressBar("evaluate")
        try:
            return evaluate_folder(run, args.data, batch_size=args.batch_size, progress=bar.callback)
        finally:
            bar.close()
    metrics, predictions = evaluate_test_split(run)
    try:
        manifest = scan_dataset(run.config.data.root, bacterial=run.config.data.bacterial).manifest
    except DatasetError as exc:  # the data moved: subgroups of the stored columns only
        warn(f"{exc}; only the columns stored with the run's predictions are available")
        return metrics, predictions
    return metrics, attach_manifest(predictions, manifest)

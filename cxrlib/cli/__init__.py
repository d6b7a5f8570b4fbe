"""``python -m cxrlib``: everything the dashboard does, from a terminal.

Subcommands: ``train`` (foreground with a progress bar, or ``--background``), ``runs``,
``predict``, ``evaluate``, ``cancel`` and ``scan``. Progress bars go to stderr; results
(run ids, tables, file names) to stdout. Listing runs and asking for a finished run never
import TensorFlow.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence, TextIO

from cxrlib.core import paths
from cxrlib.core.config import PREPROCESS_STEPS, PreprocessConfig, RunConfig
from cxrlib.runs.registry import TERMINAL_STATES, RunNotFound

EXIT_USAGE = 2


class ProgressBar:
    """A one-line text progress bar on stderr.

    On a terminal it redraws in place (at most 10 times a second); otherwise (a log file, a
    pipe) it prints a plain line at most every ``log_interval`` seconds, and the final one.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 28,
                 log_interval: float = 10.0):
        self.label = label
        self.stream = stream or sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.1 if self.tty else log_interval
        self._last = -float("inf")
        self._drawn = False
        self._final_shown = False
        self._line = ""

    def update(self, done: float, total: float | None, text: str = "", *, force: bool = False) -> None:
        """Show ``done`` of ``total`` (``total`` None or 0: no bar, just the text)."""
        now = time.monotonic()
        final = bool(total) and done >= total and not self._final_shown
        if not (force or final) and now - self._last < self.interval:
            return
        self._final_shown = self._final_shown or final
        self._last = now
        if total:
            frac = min(max(done / total, 0.0), 1.0)
            fill = int(round(frac * self.width))
            bar = f"[{'#' * fill}{'-' * (self.width - fill)}] {frac * 100:5.1f}%"
        else:
            bar = ""
        line = " ".join(part for part in (self.label, bar, text) if part)
        if line == self._line and not final:
            return
        self._line = line
        if self.tty:
            self.stream.write("\r" + line[:200].ljust(len(line[:200]) + 2))
            self._drawn = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def callback(self, done: int, total: int) -> None:
        """``progress(done, total)`` for library functions."""
        self.update(done, total, f"{done}/{total}")

    def close(self) -> None:
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
        self._drawn = False


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(float(seconds)))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def status_line(status: dict[str, Any]) -> tuple[float, float, str]:
    """(done, total, text) of a run status for a progress bar: epochs with fractional steps."""
    epochs = status.get("epochs") or 0
    epoch = status.get("epoch") or 0  # the epoch in progress, 1-based (0 before training)
    steps, step = status.get("steps") or 0, status.get("step") or 0
    done = max(epoch - 1, 0) + step / steps if steps else float(epoch)
    done = min(done, epochs) if epochs else 0.0
    parts = [status.get("state", "?")]
    if epochs:
        parts.append(f"epoch {epoch}/{epochs}")
    if steps:
        parts.append(f"step {step}/{steps}")
    for key, value in (status.get("metrics") or {}).items():
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.4g}")
    if status.get("eta_s") is not None and status.get("state") == "running":
        parts.append(f"ETA {_duration(status['eta_s'])}")
    if status.get("message"):
        parts.append(str(status["message"]))
    return done, float(epochs), " ".join(parts)


# ------------------------------------------------------------------------------- arguments
def _add_train_args(p: argparse.ArgumentParser) -> None:
    d = RunConfig()
    g = p.add_argument_group("data and split")
    g.add_argument("--config", type=Path, help="RunConfig JSON file; the flags below override it")
    g.add_argument("--data", help=f"dataset folder (default {paths.default_data_dir()})")
    g.add_argument("--task", choices=("3class", "binary"), help=f"default {d.data.task}")
    g.add_argument("--bacterial", choices=("exclude", "class"), help="Kermany bacterial films")
    g.add_argument("--split", choices=("grouped", "random"),
                   help="grouped by patient/duplicate group (default) or the published random split")
    g.add_argument("--test-fraction", type=float, help=f"default {d.split.test_fraction}")
    g.add_argument("--val-fraction", type=float,
                   help=f"default {d.split.val_fraction}; 0 = test doubles as validation (published 80/20)")
    g = p.add_argument_group("preprocessing")
    g.add_argument("--steps", help=f"comma list of {','.join(PREPROCESS_STEPS)} or 'none' "
                                   "(default white_balance; clahe for small_cnn, as published)")
    g.add_argument("--wb-percentile", type=float, help=f"default {d.preprocess.wb_percentile}")
    g.add_argument("--clahe-clip", type=float, help=f"default {d.preprocess.clahe_clip_limit}")
    g.add_argument("--clahe-grid", type=int, help=f"default {d.preprocess.clahe_tile_grid}")
    g.add_argument("--gamma", type=float, help=f"default {d.preprocess.gamma}")
    g.add_argument("--size", type=int, help=f"model input side in pixels (default {d.preprocess.size})")
    g = p.add_argument_group("model and training")
    g.add_argument("--model", choices=("mobilenetv2", "small_cnn", "tiny"), help=f"default {d.model.family}")
    g.add_argument("--weights", choices=("imagenet", "random"), help=f"default {d.model.weights}")
    g.add_argument("--mode", choices=("head", "finetune"),
                   help="head: frozen backbone, cached features (fast on CPU; default); finetune: all layers")
    g.add_argument("--epochs", type=int, help=f"default {d.train.epochs}")
    g.add_argument("--batch-size", type=int, help=f"default {d.train.batch_size}")
    g.add_argument("--lr", type=float, help=f"Adam learning rate (default {d.train.learning_rate})")
    g.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   help="no random rotation / flip")
    g.add_argument("--rotation", type=float, help=f"max rotation, fraction of a turn (default {d.train.rotation})")
    g.add_argument("--no-hflip", dest="hflip", action="store_const", const=False, help="no horizontal flip")
    g.add_argument("--feature-augment-copies", type=int,
                   help="head mode: augmented copies of each training film whose features are cached (default 0)")
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="stop after PATIENCE epochs without val-loss gain")
    g.add_argument("--init-from-head", action="store_const", const=True,
                   help="finetune: start from the trained head of the matching head run")
    g.add_argument("--seed", type=int, help="seed of the split and of training (default 42)")
    g = p.add_argument_group("execution")
    g.add_argument("--background", action="store_true",
                   help="start a detached process and return; follow it with `runs`")
    g.add_argument("--no-restart", dest="restart", action="store_false",
                   help="return a failed or cancelled run as it is instead of restarting it")
    g.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig of ``train``'s flags (over ``--config`` when given, else the defaults).

    Raises:
        ValueError: for an invalid value (the config dataclasses validate).
    """
    base = RunConfig()
    if args.config:
        record = json.loads(args.config.read_text(encoding="utf-8"))
        # A RunConfig dict, or a run folder's config.json (which wraps it under "config").
        if isinstance(record, dict) and "data" not in record:
            record = record.get("config", record)
        if not isinstance(record, dict) or not all(isinstance(v, dict) for v in record.values()):
            raise ValueError(f"{args.config} is not a RunConfig JSON object "
                             "(sections data, preprocess, model, split, train)")
        base = RunConfig.from_dict(record)

    def pick(**pairs: Any) -> dict[str, Any]:
        return {k: v for k, v in pairs.items() if v is not None}

    data = base.data.replace(**pick(root=args.data, task=args.task, bacterial=args.bacterial))
    if not args.config and args.data is None:
        data = data.replace(root=str(paths.default_data_dir()))
    model = base.model.replace(**pick(family=args.model, weights=args.weights))
    steps = None
    if args.steps is not None:
        steps = () if args.steps.strip().lower() in ("", "none") else tuple(
            s.strip() for s in args.steps.split(",") if s.strip())
    elif args.model == "small_cnn" and not args.config:
        steps = PreprocessConfig.published_clahe().steps
    preprocess = base.preprocess.replace(**pick(
        steps=steps, wb_percentile=args.wb_percentile, clahe_clip_limit=args.clahe_clip,
        clahe_tile_grid=args.clahe_grid, gamma=args.gamma, size=args.size))
    split = base.split.replace(**pick(kind=args.split, test_fraction=args.test_fraction,
                                      val_fraction=args.val_fraction, seed=args.seed))
    train = base.train.replace(**pick(
        mode=args.mode, epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr,
        augment=args.augment, rotation=args.rotation, hflip=args.hflip,
        feature_augment_copies=args.feature_augment_copies, early_stopping=args.early_stopping,
        init_from_head=args.init_from_head, seed=args.seed))
    return RunConfig(data=data, preprocess=preprocess, model=model, split=split, train=train)


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m cxrlib`` argument parser."""
    parser = argparse.ArgumentParser(prog="python -m cxrlib", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train a model (or return the finished run of the same config)")
    _add_train_args(p)

    p = sub.add_parser("runs", help="list runs with their state and headline metrics")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("predict", help="per-class probabilities of image files or a folder")
    p.add_argument("model", metavar="MODEL_OR_RUN", help="run id (or prefix), run folder, or .keras file")
    p.add_argument("inputs", nargs="+", metavar="FILES_OR_FOLDER")
    p.add_argument("--out", type=Path, required=True, help="CSV to write")
    p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("evaluate", help="a trained run on another labelled dataset folder")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--data", required=True, type=Path, help="labelled dataset folder")
    p.add_argument("--out-dir", required=True, type=Path, help="gets metrics.json and predictions.csv")
    p.add_argument("--batch-size", type=int, default=32)

    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--grace", type=float, default=15.0, help="seconds before SIGTERM (default 15)")

    # The audit has its own parser (cxrlib.audit.main); everything after "audit" goes to it.
    p = sub.add_parser("audit", add_help=False,
                       help="trust audit of a run: shortcuts, leakage, where the model looks "
                            "(see `audit --help`)")
    p.add_argument("audit_args", nargs=argparse.REMAINDER)

    p = sub.add_parser("scan", help="summarise a dataset folder")
    p.add_argument("root", metavar="DIR", type=Path)
    p.add_argument("--bacterial", choices=("exclude", "class"), default="exclude")
    p.add_argument("--manifest", type=Path, help="also write the manifest CSV here")
    return parser


# -------------------------------------------------------------------------------- commands
def _scan(root: str | Path, bacterial: str):
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

    bar = ProgressBar(f"scan {root}")
    try:
        return scan_dataset(root, bacterial=bacterial, progress=bar.callback)
    finally:
        bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from cxrlib.runs import runner  # noqa: PLC0415
    from cxrlib.runs.registry import Run  # noqa: PLC0415

    if args.run_dir is not None:  # the runner's detached process
        return runner.execute_run(Run(args.run_dir))
    cfg = config_from_args(args)
    fingerprint = _scan(cfg.data.root, cfg.data.bacterial).for_task(cfg.data.task).fingerprint
    if args.background:
        run = runner.start(cfg, fingerprint=fingerprint, restart=args.restart)
        status = run.status()
        print(f"run {run.id}\nfolder {run.folder}\nstate {status.get('state')}")
        return 0
    from cxrlib.runs.registry import create_run  # noqa: PLC0415

    run = create_run(cfg, fingerprint)
    print(f"run {run.id}\nfolder {run.folder}", flush=True)
    bar = ProgressBar("train")
    try:
        runner.train_foreground(cfg, fingerprint=fingerprint,
                                on_status=lambda s: bar.update(*status_line(s),
                                                               force=s.get("state") in TERMINAL_STATES))
    finally:
        bar.close()
    status = run.status()
    row = _headline_row(run)
    print(f"state {status.get('state')}\naccuracy {row['accuracy']}\nmacro_auc {row['macro_auc']}")
    leak = run.leakage
    if leak.get("patients_on_several_sides") or leak.get("groups_on_several_sides"):
        print(f"warning: {leak.get('patients_on_several_sides')} patients and "
              f"{leak.get('groups_on_several_sides')} groups are on more than one side of the split",
              file=sys.stderr)
    if status.get("error"):
        print(f"error: {status['error']} (log: {run.log_path})", file=sys.stderr)
    return {"done": 0, "cancelled": 130}.get(status.get("state"), 1)


def _headline_row(run) -> dict[str, Any]:
    from cxrlib.runs.registry import headline  # noqa: PLC0415

    row = headline(run)
    for key in ("accuracy", "macro_auc"):
        row[key] = "-" if row[key] is None else f"{row[key]:.3f}"
    return row


def cmd_runs(args: argparse.Namespace) -> int:
    from cxrlib.runs.registry import headline, list_runs  # noqa: PLC0415

    runs = list_runs()
    if args.json:
        print(json.dumps([headline(r) for r in runs], indent=2, default=str))
        return 0
    if not runs:
        print(f"no runs in {paths.runs_dir()}")
        return 0
    rows = [_headline_row(r) for r in runs]
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))
    return 0


class _ModelFile:
    """A bare ``.keras`` file outside a run: default preprocessing at the model's input size."""

    def __init__(self, path: Path):
        from cxrlib.core.classes import CLASSES, TASK_CLASSES  # noqa: PLC0415
        from cxrlib.models.architectures import load_model  # noqa: PLC0415

        self.model = load_model(path)
        self.id = path.stem
        n_out = int(self.model.output_shape[-1])
        self.classes = CLASSES if n_out == 3 else TASK_CLASSES["binary"]
        size = int(self.model.input_shape[1])
        self.config = RunConfig(preprocess=PreprocessConfig(size=size))
        print(f"note: {path} is not in a run folder; using preprocessing {self.config.preprocess.steps} "
              f"at {size} px and classes {list(self.classes)}", file=sys.stderr)

    def load_model(self):
        return self.model


def _resolve_model(ref: str):
    from cxrlib.runs.registry import Run, get_run  # noqa: PLC0415

    path = Path(ref)
    if path.is_dir() and (path / "config.json").is_file():
        return Run(path)
    if path.is_file():
        if (path.parent / "config.json").is_file():
            return Run(path.parent)
        return _ModelFile(path)
    return get_run(ref)


def cmd_predict(args: argparse.Namespace) -> int:
    from cxrlib.core.fsutil import write_text_atomic  # noqa: PLC0415
    from cxrlib.evaluation.predict import image_files, predict_paths  # noqa: PLC0415

    source = _resolve_model(args.model)
    files = image_files(args.inputs)
    if not files:
        print("no image files found", file=sys.stderr)
        return EXIT_USAGE
    bar = ProgressBar("predict")
    try:
        table = predict_paths(source, files, batch_size=args.batch_size, progress=bar.callback)
    finally:
        bar.close()
    write_text_atomic(args.out, table.to_csv(index=False))
    bad = table[table["error"] != ""]
    for _, row in bad.iterrows():
        print(f"unreadable: {row['path']}: {row['error']}", file=sys.stderr)
    print(f"{len(table) - len(bad)} predicted, {len(bad)} unreadable -> {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cxrlib.core.fsutil import write_json_atomic, write_text_atomic  # noqa: PLC0415
    from cxrlib.evaluation.predict import evaluate_folder  # noqa: PLC0415
    from cxrlib.runs.registry import get_run  # noqa: PLC0415

    run = get_run(args.run)
    bar = ProgressBar("evaluate")
    try:
        metrics, predictions = evaluate_folder(run, args.data, batch_size=args.batch_size,
                                               progress=bar.callback)
    finally:
        bar.close()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out_dir / "metrics.json", metrics)
    write_text_atomic(args.out_dir / "predictions.csv", predictions.to_csv(index=False))
    auc = (metrics.get("auc") or {}).get("macro")
    print(f"accuracy {metrics['accuracy']:.4f}  macro_auc {'-' if auc is None else f'{auc:.4f}'}  "
          f"n {metrics['n']}  -> {args.out_dir}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from cxrlib.runs.runner import cancel  # noqa: PLC0415

    status = cancel(args.run, grace_s=args.grace)
    print(f"{args.run}: {status.get('state')}")
    return 0


def cmd_scan(args: argparse.Namespace) -> int:
    from cxrlib.data.datasets import dataset_stats  # noqa: PLC0415

    dataset = _scan(args.root, args.bacterial)
    print(f"{dataset.root}  layout {dataset.layout}  fingerprint {dataset.fingerprint}  "
          f"images {len(dataset.manifest)}  unreadable {len(dataset.problems)}")
    print(dataset_stats(dataset).to_string(index=False))
    for _, row in dataset.problems.head(20).iterrows():
        print(f"unreadable: {row['path']}: {row['reason']}", file=sys.stderr)
    if args.manifest:
        from cxrlib.core.fsutil import write_text_atomic  # noqa: PLC0415

        write_text_atomic(args.manifest, dataset.manifest.to_csv(index=False))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from cxrlib.audit import main as audit_main  # noqa: PLC0415

    rest = args.audit_args[1:] if args.audit_args[:1] == ["--"] else args.audit_args
    return audit_main(rest)


COMMANDS = {"audit": cmd_audit, "train": cmd_train, "runs": cmd_runs, "predict": cmd_predict,
            "evaluate": cmd_evaluate, "cancel": cmd_cancel, "scan": cmd_scan}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for a usage error such as an unknown run)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["audit"]:  # argparse's REMAINDER drops a leading "--help": pass it on whole
        argv = ["audit", "--", *argv[1:]]
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except RunNotFound as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # e.g. a --config file, a .keras model or an --out folder that is not there
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:
        if type(exc).__name__ in ("DatasetError", "ModelFileError", "WeightsUnavailable"):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        raise

"""What the CLI's command modules share: exit codes, the error mapping, scans, model references."""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DATA = 4
EXIT_CANCELLED = 130

_DATA_ERRORS = ("DatasetError", "ImageReadError", "ModelFileError", "WeightsUnavailable",
                "RunFileError", "RunNotFound", "RunBusy", "DatasetChanged", "PacsError",
                "WriteError", "OutputRefused")
"""Names of the error classes about the user's data (their subclasses count too, e.g.
``FolderNotAllowed`` and ``TooFewFilms`` are DatasetErrors); by name, so that mapping an error
imports nothing."""


OVERWRITE_HELP = ("replace an output that exists (default: refuse); never an input of this command, "
                  "a dataset file or the workspace's runs, caches or reviews")


STDOUT = "-"
"""The ``--out`` of a CSV that goes to standard output (``predict``, ``reviews export``)."""


def write_table(output, out, text: str) -> str:
    """Write the CSV ``text`` to ``out`` by ``output``'s rules (a
    :class:`cxrlib.core.outputs.UserOutput`), or to standard output when ``out`` is
    :data:`STDOUT`; returns where it went, for the summary line (which then goes to stderr)."""
    if str(out) == STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
        return "stdout"
    output.write(out, text)
    return str(out)


def user_output(args, *, flag: str = "--out", inputs=(), datasets=(), runs=()):
    """The :class:`cxrlib.core.outputs.UserOutput` of a command's user-named output, with
    ``args.overwrite``: the one place a command declares what its outputs must never write over.

    Args:
        inputs: files and folders the command reads (no output replaces one, nor an existing
            file inside one).
        datasets: dataset folders the command reads: no output lands inside one at all.
        runs: the runs (or bare model files) the command uses: each run's dataset (its config's
            ``data.root``) is one of ``datasets``; a bare ``.keras`` file has none.
        flag: the option that names the output, for messages.
    """
    from cxrlib.core.outputs import UserOutput  # noqa: PLC0415
    from cxrlib.runs.run import Run  # noqa: PLC0415

    roots = [*datasets, *(run.config.data.root for run in runs if isinstance(run, Run))]
    return UserOutput(overwrite=args.overwrite, inputs=[p for p in inputs if p],
                      outside=[p for p in roots if p], flag=flag)


class UsageError(Exception):
    """A flag or value the user gave that cannot work (exit code 2)."""


class NoInputFiles(ValueError):
    """None of a command's inputs held an image file (exit code 4: nothing could be read)."""


def data_error_message(exc: BaseException) -> str | None:
    """The one-line message of an error that is about the user's data, or None for a bug."""
    if isinstance(exc, KeyError) and type(exc).__name__ == "RunNotFound":
        return str(exc.args[0] if exc.args else exc)
    if any(c.__name__ in _DATA_ERRORS for c in type(exc).__mro__) or isinstance(exc, ValueError):
        return str(exc)
    if isinstance(exc, (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                        PermissionError)):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.errno is not None:  # read-only, disk full, name too long...
        from cxrlib.core.outputs import os_reason  # noqa: PLC0415

        name = os.fsdecode(exc.filename) if exc.filename else ""
        if os.path.basename(name).startswith("."):  # a hidden temporary: name its folder
            name = os.path.dirname(name)
        return f"{name}: {os_reason(exc)}" if name else os_reason(exc)
    return None


def report_failed_run(run, status: dict, errors: list) -> int:
    """Say in one line on stderr why ``run`` failed, and return the exit code: a data or OS
    error (:func:`data_error_message` of the error it failed with here, in ``errors``) is 4, any
    other failure 1 (a run failed). Its log is named only when there is one (a run trained in
    the foreground writes none; its traceback is in status.json)."""
    message = data_error_message(errors[0]) if errors else None
    log = f" (log: {run.log_path})" if run.log_path.is_file() else ""
    print(f"error: {message or status.get('error')}{log}", file=sys.stderr)
    return EXIT_FAILED if message is None else EXIT_DATA


def scan(root: str | Path, bacterial: str):
    """:func:`cxrlib.data.datasets.scan_dataset` with a progress bar on stderr, then the dataset's
    warnings (empty or unreadable class folders, skipped folders, manifest disagreements) there."""
    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415
    from cxrlib.data.datasets import scan_dataset  # noqa: PLC0415

    with ProgressBar(f"scan {root}") as bar:
        dataset = scan_dataset(root, bacterial=bacterial, progress=bar.callback)
    for message in dataset.warnings:
        warn(message)
    return dataset


def print_json(value: Any) -> None:
    """Strict JSON on stdout: NaN and infinities become ``null``."""
    print(json.dumps(_finite(value), indent=2, default=str, allow_nan=False))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def print_table(rows: list[dict[str, Any]]) -> None:
    """Rows of equal keys as space-aligned columns on stdout."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).ljust(widths[c]) for c in columns))


def warn(message: str) -> None:
    """A warning line on stderr (a name in it shown by :func:`cxrlib.data.roots.printable`)."""
    from cxrlib.data.roots import printable  # noqa: PLC0415

    print(f"warning: {printable(message)}", file=sys.stderr)


def new_counts() -> dict[str, int]:
    """The counts of :func:`tally`, all 0."""
    return {"explained": 0, "flat": 0, "unreadable": 0, "warned": 0}


def tally(row: dict, counts: dict[str, int]) -> None:
    """Count one row of ``explain`` (files or a PACS study) in ``counts``, and name an unreadable film, or one read with a
    decoder warning (read, but maybe not as the film looks), on stderr."""
    if row["error"]:
        counts["unreadable"] += 1
        listed("unreadable", row["path"], row["error"])
    else:
        counts["flat" if row["flat"] else "explained"] += 1
    if row["warning"]:
        counts["warned"] += 1
        listed("warning", row["path"], row["warning"])


def warned_note(count: int) -> str:
    """``, 2 read with a warning`` for a command's summary line ("" for none): films decoded
    with a warning (:func:`cxrlib.data.imageio.decoder_warning`), each named by :func:`listed`."""
    return f", {count} read with a warning" if count else ""


def listed(kind: str, path: Any, reason: str) -> None:
    """A file the command could not use, on stderr (``unreadable:``, ``left out:``): its name
    through :func:`cxrlib.data.roots.printable`, so no control character or byte that is not
    UTF-8 reaches the terminal."""
    from cxrlib.data.roots import printable  # noqa: PLC0415

    print(f"{kind}: {printable(path)}: {printable(reason)}", file=sys.stderr)


def input_files(inputs) -> tuple[list, list[dict]]:
    """``(image files, files left out)`` of ``inputs`` (files and folders;
    :func:`cxrlib.evaluation.predict.image_files`), each file left out listed on stderr with its
    reason; no image file at all is :class:`NoInputFiles` (exit 4, as for every command that
    could read none of its inputs)."""
    from cxrlib.evaluation.predict import image_files  # noqa: PLC0415

    left_out: list[dict] = []
    files = image_files(inputs, left_out)
    for row in left_out:
        listed("left out", row["path"], row["reason"])
    if not files:
        raise NoInputFiles("no image files found")
    return files, left_out


NAME_BYTES = 200
"""The longest output name part kept whole (bytes): with ``-<k>`` and ``-<method>.png`` it must stay
within the file system's 255 bytes a name."""


def output_names(inputs, files) -> list[str]:
    """Per file, its output's path under ``--out`` without its image ending (a DICOM named by a
    UID keeps its last part) (explain's overlays, lungs' masks): its path relative to the folder of ``inputs`` it was found in (a file given by name,
    or no folders given: its name), made unique; a part too long for a file name is cut and
    given a hash of the whole, so two long names stay two."""
    from cxrlib.data.imageio import IMAGE_SUFFIXES  # noqa: PLC0415 (the commands that name outputs read films)

    folders = [Path(i).resolve() for i in inputs if Path(i).is_dir()]
    names, seen = [], set()
    for f in map(Path, files):
        base = next((d for d in folders if d in f.resolve().parents), None)
        stem = f.resolve().relative_to(base) if base else Path(f.name)
        if stem.suffix.lower() in IMAGE_SUFFIXES:  # not a UID's last part (1.2.840...55.3)
            stem = stem.with_suffix("")
        stem = "/".join(_short(part) for part in stem.parts)
        name, k = stem, 2
        while name in seen:
            name, k = f"{stem}-{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def _short(part: str) -> str:
    raw = os.fsencode(part)
    if len(raw) <= NAME_BYTES:
        return part
    import hashlib  # noqa: PLC0415

    digest = hashlib.sha256(raw).hexdigest()[:12]
    return os.fsdecode(raw[:NAME_BYTES - 16]).rstrip() + f"~{digest}"

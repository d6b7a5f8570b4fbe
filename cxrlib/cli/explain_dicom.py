"""``explain``'s DICOM side: ``--dicom-out DIR`` for DICOM files, and ``--pacs ... [--send]``.

Each explained film's results (:mod:`cxrlib.dicom.results`) go into ``DIR/<film>/`` (the film's
output name for files, its SOP instance UID for a PACS study) and, with ``--send``, back to the
PACS by STOW-RS. Everything is computed before anything is written or sent. The results are
user-named outputs (:class:`cxrlib.core.outputs.UserOutput`): a result file that exists is refused
before any film is read unless ``--overwrite``, never in an input or the workspace's stores, and
a film's files are written all or none.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxrlib.cli.common import new_counts, tally, warn, warned_note


def _is_dicom(path: str | Path) -> bool:
    from cxrlib.data.imageio import DICOM_SUFFIXES  # noqa: PLC0415

    if str(path).lower().endswith(DICOM_SUFFIXES):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def results_output(args: argparse.Namespace, run, inputs=()):
    """The :class:`cxrlib.core.outputs.UserOutput` of ``--dicom-out`` (its ``--overwrite``, the
    command's inputs, the dataset of ``run``), its folder checked now, before anything is read
    or retrieved."""
    from cxrlib.cli.common import user_output  # noqa: PLC0415

    output = user_output(args, flag="--dicom-out", inputs=inputs, runs=[run])
    output.check(args.dicom_out, folder=True)
    return output


def _check_results(output, folder: Path, names) -> None:
    """Refuse now, before any film is explained, a result file that may not be written."""
    from cxrlib.dicom.results import FILE_NAMES  # noqa: PLC0415

    for name in names:
        for file in FILE_NAMES.values():
            output.check(Path(folder) / name / file)


class DicomFolder:
    """``on_film`` for :func:`cxrlib.explain.batch.explain_files`: DICOM results of DICOM files."""

    def __init__(self, run, folder: Path, files, names, output):
        self.run, self.folder, self.output = run, Path(folder), output
        self.names = {str(f): n for f, n in zip(files, names)}
        self.dicom = {str(f) for f in files if _is_dicom(f)}
        self.written, self.failed = 0, []
        _check_results(output, self.folder, [self.names[f] for f in self.dicom])

    def __call__(self, path: str, film, item) -> None:
        import pydicom  # noqa: PLC0415

        from cxrlib.dicom.pipeline import results_of  # noqa: PLC0415

        if path not in self.dicom:
            return
        try:
            # force: a film read without its preamble (as read_film reads it) gets its results too
            source = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            objects = results_of(self.run, source, film, item)
        except Exception as exc:  # noqa: BLE001  (a header highdicom cannot reference: said, not fatal)
            # Our own ValueErrors (a missing UID, another resolution) are sentences of their own.
            kind = "" if type(exc) is ValueError else f"{type(exc).__name__}: "
            self.failed.append(f"{path}: {kind}{(str(exc).splitlines() or [''])[0][:200]}")
            return
        self.written += len(objects.write(self.folder / self.names[path], output=self.output))

    def report(self) -> None:
        """The DICOM side's summary lines."""
        other = len(self.names) - len(self.dicom)
        print(f"{self.written} DICOM result objects -> {self.folder}")
        if other:
            warn(f"{other} film(s) are not DICOM: no DICOM results for them (a SEG or SR must "
                 f"reference a DICOM source)")
        for line in self.failed:
            warn(f"no DICOM results for {line}")


def explain_pacs(run, args: argparse.Namespace, settings, *, output, write, csv_name: str) -> int:
    """``explain --pacs URL --study UID [--out DIR] [--dicom-out DIR] [--send]``.

    ``output`` (a :class:`cxrlib.core.outputs.UserOutput`) writes the overlays; ``write(out,
    fieldnames, rows, bar)`` and ``csv_name`` are the explain command's own table writer and file
    name (passed in, so this module does not import its caller)."""
    from cxrlib.cli.pacs import study_films  # noqa: PLC0415
    from cxrlib.cli.progress import ProgressBar  # noqa: PLC0415
    from cxrlib.dicom.pipeline import explain_datasets  # noqa: PLC0415
    from cxrlib.evaluation.predict import check_model_fits  # noqa: PLC0415
    from cxrlib.explain.batch import columns, lung_segmenter  # noqa: PLC0415
    from cxrlib.explain.methods import get_cam  # noqa: PLC0415
    from cxrlib.explain.png import to_png  # noqa: PLC0415

    dicom_output = results_output(args, run) if args.dicom_out is not None else None  # first
    model = run.load_model()
    check_model_fits(model, run.config.preprocess, run.classes)
    cam = get_cam(settings.explain.method, model, settings.explain.layer)
    client, study, datasets = study_films(args)
    if dicom_output is not None:
        _check_results(dicom_output, args.dicom_out, [str(d.SOPInstanceUID) for d in datasets])
    lungs, why_not = lung_segmenter()
    if lungs is None:
        print(f"note: {why_not}", file=sys.stderr)
    results, bar = [], ProgressBar(f"explain ({settings.explain.method})")
    for begin in range(0, len(datasets), settings.batch_size):
        results += explain_datasets(run, datasets[begin:begin + settings.batch_size], settings,
                                    model=model, cam=cam, lungs=lungs)
        bar.callback(min(begin + settings.batch_size, len(datasets)), len(datasets))
    objects = [r.objects for r in results if r.objects is not None]
    if args.out is not None:
        for r in results:
            if r.overlay is not None:
                rel = f"{r.row['path']}-{cam.name}.png"
                output.write(args.out / rel, to_png(r.overlay))
                r.row["overlay"] = rel
        counts = write(args.out, columns(run.classes), (r.row for r in results), bar)
        where = f" -> {args.out / csv_name}"
    else:
        bar.close()
        counts = new_counts()
        for r in results:
            tally(r.row, counts)
        where = ""
    print(f"{counts['explained']} explained, {counts['flat']} flat (no overlay), "
          f"{counts['unreadable']} unreadable of study {study}{warned_note(counts['warned'])}"
          f"{where}")
    if args.dicom_out is not None:
        n = sum(len(o.write(args.dicom_out / str(r.row["path"]), output=dicom_output))
                for r, o in ((r, r.objects) for r in results) if o is not None)
        print(f"{n} DICOM result objects -> {args.dicom_out}")
    if args.send:
        stored = client.store([ds for o in objects for ds in o.datasets()])
        print(f"{stored} DICOM result objects stored on the PACS at {client.settings.url}")
    return 0

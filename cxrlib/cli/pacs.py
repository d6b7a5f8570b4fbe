"""``pacs search``, and the ``--pacs`` source that ``predict`` and ``explain`` take instead of files.

The server's URL comes from ``--pacs`` or ``$CXR_PACS_URL``; credentials only from the
environment (``CXR_PACS_USER`` / ``CXR_PACS_PASSWORD`` or ``CXR_PACS_TOKEN``), never from a flag
(a flag would show in the shell history and the process list). See ``docs/pacs.md``.
"""
from __future__ import annotations

import argparse
import sys

from cxrlib.cli.common import UsageError, print_json, print_table


class _Intermixed(argparse.ArgumentParser):
    """A subcommand parser whose optional positionals (``FILES_OR_FOLDER``, ``nargs="*"``) may
    also follow the options (``predict RUN --out p.csv folder/``), as they could when they were
    required: argparse otherwise fills a ``*`` positional with nothing at the first chance and
    refuses the later files (Python's parse_known_intermixed_args exists for this)."""

    _inside = False

    def parse_known_args(self, args=None, namespace=None):
        if self._inside:  # parse_known_intermixed_args calls back here
            return super().parse_known_args(args, namespace)
        self._inside = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._inside = False


def add_source_arguments(p: argparse.ArgumentParser) -> None:
    """``--pacs URL`` with ``--study UID`` or ``--accession N``: films from a PACS, not files.

    The files become optional (``nargs="*"``); ``p`` is made to accept them after the options too.
    """
    p.__class__ = _Intermixed
    g = p.add_argument_group("films from a PACS over DICOMweb (instead of files)")
    g.add_argument("--pacs", metavar="URL", help="DICOMweb base URL (default $CXR_PACS_URL); "
                   "credentials from CXR_PACS_USER / CXR_PACS_PASSWORD or CXR_PACS_TOKEN")
    g.add_argument("--study", metavar="UID", help="the study instance UID whose CR/DX films to use")
    g.add_argument("--accession", metavar="N", help="the study's accession number (instead of --study)")


def uses_pacs(args: argparse.Namespace) -> bool:
    """True when ``args`` name a study on a PACS; a usage error when they mix it with files."""
    wanted = bool(args.study or args.accession)
    if args.pacs and not wanted:
        raise UsageError("--pacs needs --study UID or --accession N")
    if args.study and args.accession:
        raise UsageError("give --study or --accession, not both")
    if wanted and args.inputs:
        raise UsageError("give image files or a PACS study (--study / --accession), not both")
    if not wanted and not args.inputs:
        raise UsageError("give image files or folders, or a PACS study with --pacs URL --study UID")
    return wanted


def client_of(args: argparse.Namespace):
    """A :class:`cxrlib.dicom.web.PacsClient` for ``--pacs`` (or ``$CXR_PACS_URL``)."""
    from cxrlib.dicom.web import PacsClient, PacsSettings  # noqa: PLC0415

    try:
        return PacsClient(PacsSettings.from_env(url=args.pacs))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def study_films(args: argparse.Namespace) -> tuple[object, str, list]:
    """``(client, study UID, datasets)``: the study's CR/DX films retrieved into memory."""
    client = client_of(args)
    study = args.study or client.study_of_accession(args.accession)
    datasets = client.retrieve_films(study)
    print(f"retrieved {len(datasets)} film(s) of study {study} from {client.settings.url}",
          file=sys.stderr)
    return client, study, datasets


def register(sub) -> None:
    """Add the ``pacs`` command group (``pacs search``)."""
    p = sub.add_parser("pacs", help="a PACS over DICOMweb: search studies",
                       description="Talks to a PACS over DICOMweb (see docs/pacs.md). The URL comes "
                                   "from --pacs or CXR_PACS_URL; credentials from the environment.")
    pacs_sub = p.add_subparsers(dest="pacs_command", required=True, metavar="ACTION")
    s = pacs_sub.add_parser("search", help="list studies with CR/DX films (QIDO-RS)")
    s.add_argument("--pacs", metavar="URL", help="DICOMweb base URL (default $CXR_PACS_URL)")
    s.add_argument("--patient-id", help="exact patient id")
    s.add_argument("--accession", help="exact accession number")
    s.add_argument("--from", dest="date_from", metavar="DATE", help="study date from (YYYY-MM-DD)")
    s.add_argument("--to", dest="date_to", metavar="DATE", help="study date to (YYYY-MM-DD)")
    s.add_argument("--modality", action="append", choices=("CR", "DX"),
                   help="keep studies with this modality (repeatable; default CR and DX)")
    s.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    s.add_argument("--json", action="store_true", help="JSON instead of a table")
    s.set_defaults(func=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """List the studies a QIDO-RS search finds (no patient names: ids and UIDs only)."""
    client = client_of(args)
    try:
        studies = client.search_studies(patient_id=args.patient_id, accession=args.accession,
                                        date_from=args.date_from, date_to=args.date_to,
                                        modalities=tuple(args.modality or ("CR", "DX")),
                                        limit=args.limit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    rows = [{"study_uid": s.study_uid, "date": s.study_date, "patient_id": s.patient_id,
             "accession": s.accession, "modalities": "/".join(s.modalities),
             "series": "" if s.n_series is None else s.n_series,
             "films": "" if s.n_instances is None else s.n_instances,
             "description": s.description} for s in studies]
    if args.json:
        print_json(rows)
    elif rows:
        print_table(rows)
    print(f"{len(rows)} stud{'y' if len(rows) == 1 else 'ies'} on {client.settings.url}",
          file=sys.stderr)
    return 0

"""A small DICOMweb client for a PACS: QIDO-RS search, WADO-RS retrieve into memory, STOW-RS store.

Built on ``dicomweb-client``. Settings (:class:`cxrlib.dicom.settings.PacsSettings`, re-exported
here) come from the environment or from a mapping such as Streamlit's secrets: the server's URL,
HTTP basic credentials or a bearer token, TLS verification (on by default; a CA bundle may be
named) and a bounded time-out.

Credentials are held out of every log line, error message and ``repr``: they ride on the HTTP
session's ``auth`` (so neither dicomweb-client's debug log of request headers nor an exception's
text carries them), a URL's ``user:password@`` part is moved into the settings and cut from the
URL, and every failure is one :class:`PacsError` line written here from the status alone.
Retries are off, so a request's time is bounded by the time-out.

Nothing retrieved is written to disk: instances come back as pydicom datasets in memory.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cxrlib.dicom.dicom_json import NotDicomJson, dicom_json
from cxrlib.dicom.dicom_json import as_int as _int
from cxrlib.dicom.dicom_json import value as _value
from cxrlib.dicom.dicom_json import values as _values
from cxrlib.dicom.settings import CONNECT_TIMEOUT, ENV, PacsSettings, safe_url  # noqa: F401

FILM_MODALITIES = ("CR", "DX")
"""Modalities of the films the product reads (computed and digital radiography)."""
T = TypeVar("T")


class PacsError(Exception):
    """A PACS request that failed; ``str()`` is one line that names no credential."""


@dataclass(frozen=True)
class Study:
    """One study a search found (patient name kept for a display that asks for it)."""

    study_uid: str
    patient_id: str
    patient_name: str
    study_date: str
    accession: str
    description: str
    modalities: tuple[str, ...]
    n_series: int | None
    n_instances: int | None


@dataclass(frozen=True)
class FilmRef:
    """Where one film (an instance of a CR/DX series) is on the PACS."""

    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    series_description: str = ""
    instance_number: int | None = None


class PacsClient:
    """QIDO-RS, WADO-RS and STOW-RS against one DICOMweb server (see the module docstring)."""

    def __init__(self, settings: PacsSettings):
        import requests  # noqa: PLC0415

        self.settings = settings
        session = requests.Session()
        session.verify = settings.verify
        if settings.token:
            session.auth = _Bearer(settings.token)
        elif settings.username:
            session.auth = requests.auth.HTTPBasicAuth(settings.username, settings.password or "")
        timeout = (min(CONNECT_TIMEOUT, settings.timeout), settings.timeout)
        self._client = _client_class()(url=settings.url, session=session, timeout=timeout)
        self._client.set_http_retry_params(retry=False)

    # -- QIDO-RS ---------------------------------------------------------------------------

    def search_studies(self, *, patient_id: str | None = None, accession: str | None = None,
                       date_from: str | None = None, date_to: str | None = None,
                       modalities: Sequence[str] = FILM_MODALITIES, limit: int = 200) -> list[Study]:
        """Studies matching every filter given, holding a series of one of ``modalities``.

        Args:
            patient_id, accession: exact matches.
            date_from, date_to: the study date range, ``YYYYMMDD`` (either end may be open).
            modalities: keep studies whose ModalitiesInStudy has one of these (empty: all).
            limit: at most this many studies.
        """
        filters: dict[str, str] = {}
        if patient_id:
            filters["PatientID"] = patient_id
        if accession:
            filters["AccessionNumber"] = accession
        if date_from or date_to:
            filters["StudyDate"] = f"{_date(date_from)}-{_date(date_to)}"
        fields = ["ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                  "NumberOfStudyRelatedInstances", "StudyDescription"]
        studies = self._call("search for studies", lambda: [_study(item) for item in dicom_json(
            self._client.search_for_studies(search_filters=filters, fields=fields, limit=limit),
            "0020000D")])
        wanted = set(modalities)
        return [s for s in studies if not wanted or not s.modalities or wanted & set(s.modalities)]

    def study_of_accession(self, accession: str) -> str:
        """The study instance UID of an accession number.

        Raises:
            PacsError: no study, or several, has it.
        """
        uids = sorted({s.study_uid for s in self.search_studies(accession=accession, modalities=())})
        if not uids:
            raise PacsError(f"no study on the PACS has accession number {accession}")
        if len(uids) > 1:
            raise PacsError(f"{len(uids)} studies on the PACS share accession number {accession}; "
                            f"name one with --study")
        return uids[0]

    def film_series(self, study_uid: str,
                    modalities: Sequence[str] = FILM_MODALITIES) -> list[dict[str, Any]]:
        """The study's series of ``modalities`` (DICOM JSON), in series-number order.

        Raises:
            PacsError: the study is not there, or it has no series of ``modalities``.
        """
        series = self._call(f"list the series of study {study_uid}", lambda: dicom_json(
            self._client.search_for_series(study_uid, fields=["Modality", "SeriesDescription",
                                                               "SeriesNumber"]), "0020000E"))
        if not series:
            raise PacsError(f"study {study_uid} is not on the PACS (or has no series)")
        chosen = [s for s in series if _value(s, "00080060") in modalities]
        if not chosen:
            present = ", ".join(sorted({str(_value(s, "00080060") or "?") for s in series}))
            raise PacsError(f"study {study_uid} has no {' or '.join(modalities)} series "
                            f"(its series are: {present})")
        return sorted(chosen, key=lambda s: _int(_value(s, "00200011")) or 0)

    def films(self, study_uid: str, modalities: Sequence[str] = FILM_MODALITIES) -> list[FilmRef]:
        """The instances of a study's CR/DX series, in series and instance order.

        Raises:
            PacsError: as :meth:`film_series`.
        """
        refs: list[FilmRef] = []
        for s in self.film_series(study_uid, modalities):
            uid = str(_value(s, "0020000E"))
            instances = self._call(f"list the instances of series {uid}", lambda: dicom_json(
                self._client.search_for_instances(study_uid, uid, fields=["InstanceNumber"]), "00080018"))
            for inst in sorted(instances, key=lambda i: _int(_value(i, "00200013")) or 0):
                refs.append(FilmRef(study_uid, uid, str(_value(inst, "00080018")),
                                    str(_value(s, "00080060")), str(_value(s, "0008103E")),
                                    _int(_value(inst, "00200013"))))
        return refs

    def retrieve_films(self, study_uid: str, modalities: Sequence[str] = FILM_MODALITIES) -> list:
        """Every instance of the study's CR/DX series as pydicom datasets in memory (one WADO-RS
        request per series), in series and instance order.

        Raises:
            PacsError: as :meth:`film_series`, or a retrieve that fails.
        """
        out = []
        for s in self.film_series(study_uid, modalities):
            found = self.retrieve_series(study_uid, str(_value(s, "0020000E")))
            out.extend(sorted(found, key=lambda d: _int(getattr(d, "InstanceNumber", None)) or 0))
        return out

    # -- WADO-RS ---------------------------------------------------------------------------

    def retrieve(self, ref: FilmRef):
        """One instance as a pydicom dataset, in memory, in its stored transfer syntax."""
        return self._call(f"retrieve instance {ref.sop_uid}", lambda: self._client.retrieve_instance(
            ref.study_uid, ref.series_uid, ref.sop_uid,
            media_types=(("application/dicom", "*"),)))

    def retrieve_series(self, study_uid: str, series_uid: str) -> list:
        """Every instance of a series as pydicom datasets, in memory."""
        return self._call(f"retrieve series {series_uid}", lambda: self._client.retrieve_series(
            study_uid, series_uid, media_types=(("application/dicom", "*"),)))

    # -- STOW-RS ---------------------------------------------------------------------------

    def store(self, datasets: Sequence) -> int:
        """Store datasets (one request); returns how many the server accepted.

        Raises:
            PacsError: the request failed, or the server refused any of them.
        """
        if not datasets:
            return 0
        reply = self._call("store results", lambda: self._client.store_instances(list(datasets)))
        failed = list(getattr(reply, "FailedSOPSequence", []) or [])
        if failed:
            reasons = sorted({str(getattr(f, "FailureReason", "?")) for f in failed})
            raise PacsError(f"the PACS refused {len(failed)} of {len(datasets)} objects "
                            f"(failure reason {', '.join(reasons)})")
        return len(list(getattr(reply, "ReferencedSOPSequence", []) or [])) or len(datasets)

    # -- errors ----------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001  (mapped to one line; the text is never shown)
            raise PacsError(self._message(what, exc)) from None

    def _message(self, what: str, exc: BaseException) -> str:
        import requests  # noqa: PLC0415

        where = f"the PACS at {self.settings.url}"
        if isinstance(exc, NotDicomJson):
            return f"cannot {what}: {where} gave an answer that is not DICOMweb ({exc})"
        if isinstance(exc, requests.exceptions.SSLError):
            return (f"cannot {what}: {where} has a TLS certificate this machine does not trust "
                    f"(name its CA bundle in {ENV['verify']})")
        if isinstance(exc, requests.exceptions.Timeout):
            return f"cannot {what}: {where} did not answer within {self.settings.timeout:g} s"
        if isinstance(exc, requests.exceptions.ConnectionError):
            return f"cannot {what}: {where} cannot be reached (is it running, and is the URL right?)"
        if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
            code = exc.response.status_code
            if code in (401, 403):
                return (f"cannot {what}: {where} refused the credentials (HTTP {code}; "
                        f"authentication: {self.settings.auth})")
            if code == 404:
                return f"cannot {what}: {where} has no such object, or no DICOMweb service at this URL (HTTP 404)"
            return f"cannot {what}: {where} answered HTTP {code}"
        return f"cannot {what}: {where} gave an answer that is not DICOMweb ({type(exc).__name__})"


@functools.lru_cache(maxsize=1)
def _client_class():
    """dicomweb-client's client, tolerant of a DICOM part sent without its 128-byte preamble and
    ``DICM`` (Orthanc 1.10's DICOMweb plugin 1.7 sends the file meta group first)."""
    from dicomweb_client.api import DICOMwebClient  # noqa: PLC0415

    class Client(DICOMwebClient):
        def _decode_multipart_message(self, response, stream):
            for part in super()._decode_multipart_message(response, stream):
                if part[:2] == b"\x02\x00" and part[128:132] != b"DICM":
                    part = b"\x00" * 128 + b"DICM" + part
                yield part

    return Client


class _Bearer:
    """``Authorization: Bearer`` added when a request is sent (never in a header dict that is logged)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:
        return "_Bearer(***)"


def _date(value: str | None) -> str:
    if not value:
        return ""
    text = str(value).replace("-", "")
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"a study date must be YYYYMMDD or YYYY-MM-DD, got {value!r}")
    return text


def _study(item: dict) -> Study:
    return Study(study_uid=str(_value(item, "0020000D")), patient_id=str(_value(item, "00100020")),
                 patient_name=str(_value(item, "00100010")), study_date=str(_value(item, "00080020")),
                 accession=str(_value(item, "00080050")), description=str(_value(item, "00081030")),
                 modalities=_values(item, "00080061"), n_series=_int(_value(item, "00201206")),
                 n_instances=_int(_value(item, "00201208")))


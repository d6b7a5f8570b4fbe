"""A PACS whose DICOMweb answers are well-formed JSON of the wrong structure: every search that
parses an answer (studies, series, instances) says it in one PacsError line, never an
AttributeError or TypeError. A fake server on 127.0.0.1, no Orthanc needed."""
from __future__ import annotations

import json

import pytest
from local_http import serve

from cxrlib.dicom.web import PacsClient, PacsError, PacsSettings

STUDY = "1.2.3"
SERIES = "1.2.3.4"
GOOD_SERIES = [{"0020000E": {"vr": "UI", "Value": [SERIES]}, "00080060": {"vr": "CS", "Value": ["DX"]}}]
GOOD_INSTANCES = [{"00080018": {"vr": "UI", "Value": ["1.2.3.4.5"]},
                   "00200013": {"vr": "IS", "Value": [1]}}]
MALFORMED = {
    "an attribute that is a string": [{"0020000D": "not-a-dict"}],
    "an attribute that is a number": [{"0020000D": 7}],
    "an attribute that is a list": [{"0020000D": [STUDY]}],
    "a Value that is a string": [{"0020000D": {"vr": "UI", "Value": STUDY}}],
    "a Value holding a list": [{"0020000D": {"vr": "UI", "Value": [[STUDY]]}}],
    "no UID (no Value)": [{"0020000D": {"vr": "UI"}}],
    "a UID that is a number": [{"0020000D": {"vr": "UI", "Value": [5]}}],
    "an item that is a string": ["not-a-dataset"],
    "an item that is a list": [[1, 2]],
    "a number at the top": 42,
    "a string at the top": "studies",
}


def _serve(answers: dict):
    """A server answering GET .../series, .../instances and /studies with ``answers``' JSON."""
    def get(path: str):
        key = "instances" if path.endswith("/instances") else \
            "series" if path.endswith("/series") else "studies"
        return 200, "application/dicom+json", json.dumps(answers[key]).encode()

    server, url = serve(get)
    return server, PacsClient(PacsSettings(url=f"{url}/dicom-web", timeout=5))


def _one_line(call, what: str) -> None:
    with pytest.raises(PacsError) as caught:
        call()
    text = str(caught.value)
    assert "\n" not in text
    assert f"cannot {what}" in text and "gave an answer that is not DICOMweb" in text, text


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_study_search_is_one_pacs_error(answer):
    server, client = _serve({"studies": answer})
    try:
        _one_line(client.search_studies, "search for studies")
    finally:
        server.shutdown()


@pytest.mark.parametrize("answer", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_series_or_instance_list_is_one_pacs_error(answer):
    for key, what in (("series", f"list the series of study {STUDY}"),
                      ("instances", f"list the instances of series {SERIES}")):
        answers = {"series": GOOD_SERIES, "instances": GOOD_INSTANCES, key: _retagged(answer, key)}
        server, client = _serve(answers)
        try:
            _one_line(lambda: client.films(STUDY), what)
        finally:
            server.shutdown()


def _retagged(answer, key: str):
    """The malformed study answer with the UID tag of a series or instance (so the fault is the
    same one, where that list's UID is read)."""
    tag = {"series": "0020000E", "instances": "00080018"}[key]
    text = json.dumps(answer).replace("0020000D", tag)
    if key == "series":  # a series the filter keeps, so its UID is read
        text = text.replace(f'"{tag}"', f'"00080060": {{"vr": "CS", "Value": ["DX"]}}, "{tag}"', 1) \
            if isinstance(answer, list) and answer and isinstance(answer[0], dict) else text
    return json.loads(text)


def test_a_well_formed_answer_still_reads():
    studies = [{"0020000D": {"vr": "UI", "Value": [STUDY]}, "00080061": {"vr": "CS", "Value": ["DX"]},
                "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
                "00081030": {"vr": "LO"}, "00201208": {"vr": "IS", "Value": [3]}}]
    server, client = _serve({"studies": studies, "series": GOOD_SERIES, "instances": GOOD_INSTANCES})
    try:
        [study] = client.search_studies()
        assert (study.study_uid, study.patient_name, study.description, study.n_instances) == \
            (STUDY, "Doe^J", "", 3)
        [ref] = client.films(STUDY)
        assert (ref.series_uid, ref.sop_uid, ref.modality, ref.instance_number) == \
            (SERIES, "1.2.3.4.5", "DX", 1)
    finally:
        server.shutdown()

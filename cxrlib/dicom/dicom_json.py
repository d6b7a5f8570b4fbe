"""Reading a QIDO-RS answer (DICOM JSON, PS3.18 F.2): its structure checked first, then its values.

:func:`dicom_json` checks a whole answer before anything reads it: a list of objects, each
attribute an object whose ``"Value"`` (absent for an empty attribute, as DICOM JSON allows) is a
list of plain values or person names, and each item with its UID. An answer of another structure
raises :class:`NotDicomJson`, whose text names types and tags only (never the server's text);
:class:`cxrlib.dicom.web.PacsClient` runs it inside its error mapping, so it becomes the one line
"gave an answer that is not DICOMweb (...)".
"""
from __future__ import annotations

import re
from typing import Any

_TAG = re.compile(r"[0-9A-Fa-f]{8}")


class NotDicomJson(Exception):
    """An answer that is not DICOM JSON; ``str()`` names what is wrong, never the answer's text."""


def dicom_json(answer: Any, uid_tag: str) -> list[dict]:
    """``answer`` itself, once checked to be DICOM JSON whose every item has a ``uid_tag`` UID.

    Raises:
        NotDicomJson: another structure (see the module docstring).
    """
    if not isinstance(answer, list):
        raise NotDicomJson(f"the answer is {_kind(answer)}, not a list of data sets")
    for item in answer:
        if not isinstance(item, dict):
            raise NotDicomJson(f"an item is {_kind(item)}, not a data set")
        for tag, element in item.items():
            name = tag if _TAG.fullmatch(tag) else "a key that is not a tag"
            if not isinstance(element, dict):
                raise NotDicomJson(f"attribute {name} is {_kind(element)}, not an object")
            values = element.get("Value", [])
            if not isinstance(values, list) or not all(_plain(v) for v in values):
                raise NotDicomJson(f"the Value of attribute {name} is not a list of values")
        uid = value(item, uid_tag)
        if not isinstance(uid, str) or not uid:
            raise NotDicomJson(f"an item has no UID ({uid_tag})")
    return answer


def value(item: dict, tag: str) -> Any:
    """The first value of an attribute of a checked item ("" when it has none; a person name's
    alphabetic form)."""
    values = item.get(tag, {}).get("Value") or []
    v = values[0] if values else None
    if v is None:
        return ""
    if isinstance(v, dict):  # a person name
        return str(v.get("Alphabetic", ""))
    return v


def values(item: dict, tag: str) -> tuple[str, ...]:
    """Every value of an attribute of a checked item, as text."""
    return tuple(str(v) for v in item.get(tag, {}).get("Value") or [] if v is not None)


def as_int(v: Any) -> int | None:
    """An integer value, or None."""
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _plain(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, dict)) and not isinstance(v, bool)


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")

"""The configs' common base: a dict round-trip and a stable content hash (the run id's basis).

Every field of a config that changes a result must be a field (not a global), and fields must be
plain JSON values (str, int, float, bool, None, tuples of those). A field added after runs were
recorded is declared with :func:`added_field`: while it holds its default it is left out of the
identity (:meth:`_Config.identity_dict`), so every earlier run keeps its id.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
from typing import Any, TypeVar

T = TypeVar("T")

_ADDED = "cxr_added_field"


def added_field(default: Any) -> Any:
    """A dataclass field added to a config after runs were recorded under ids computed without
    it: left out of the run identity while it holds ``default`` (which must be what those runs
    did), so they keep their ids; any other value is part of the identity like any field."""
    return dataclasses.field(default=default, metadata={_ADDED: True})


def _plain(kind: str, value: Any) -> tuple[bool, Any]:
    """``(ok, value as a plain Python value)`` for a ``kind`` field: numpy scalars become int,
    float or bool (they would hash and serialise otherwise); numbers must be finite, and a bool
    is not a number."""
    is_bool = isinstance(value, bool) or (getattr(getattr(value, "dtype", None), "kind", "") == "b"
                                          and getattr(value, "shape", None) == ())
    if kind == "str":
        return isinstance(value, str), value
    if kind == "bool":
        return is_bool, bool(value) if is_bool else value
    if is_bool:
        return False, value
    if kind == "int":
        ok = isinstance(value, numbers.Integral)
        return ok, int(value) if ok else value
    if kind == "float":
        if not isinstance(value, numbers.Real):
            return False, value
        try:
            number = float(value)
        except OverflowError:  # an int too large for a float
            return False, value
        return math.isfinite(number), value if type(value) in (int, float) else number
    return True, value  # a type this check does not know (a nested config)


def check_types(cfg) -> None:
    """Refuse a field whose value is not of its declared type, and a number that is NaN or
    infinite (a config.json edited by hand, or a flag such as ``--lr nan``), naming the field;
    numpy scalars are stored as the plain Python values they stand for.

    Raises:
        ValueError: naming the config, the field, its type and the value.
    """
    for f in dataclasses.fields(cfg):
        declared = str(f.type).replace(" ", "")
        value = getattr(cfg, f.name)
        optional = declared.endswith("|None")
        kind = declared[:-len("|None")] if optional else declared
        if value is None:
            ok, plain = optional, value
        elif kind.startswith("tuple[") and kind.endswith(",...]"):
            inner = kind[len("tuple["):-len(",...]")]
            pairs = [_plain(inner, v) for v in value] if isinstance(value, (tuple, list)) else None
            ok = pairs is not None and all(p[0] for p in pairs)
            plain = tuple(p[1] for p in pairs) if ok else value
        else:
            ok, plain = _plain(kind, value)
        if not ok:
            raise ValueError(f"{type(cfg).__name__}.{f.name} must be {declared.replace('|', ' | ')}"
                             f"{' (finite)' if 'float' in declared else ''}, not {value!r}")
        if plain is not value:
            object.__setattr__(cfg, f.name, plain)


class _Config:
    """Mixin: dict round-trip and a stable content hash; field types are checked on creation."""

    def __post_init__(self) -> None:
        check_types(self)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(_as_declared(f.type, getattr(self, f.name)))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def identity_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the :func:`added_field` fields that hold their default: what
        the run id hashes."""
        d = self.to_dict()
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata.get(_ADDED) and getattr(self, f.name) == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        """Build from a dict; unknown keys raise, list values become tuples."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{cls.__name__}: unknown fields {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def replace(self: T, **changes: Any) -> T:
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    def hash(self) -> str:
        """:func:`config_hash` of :meth:`identity_dict`: an :func:`added_field` at its default
        leaves the hash (and so every cache keyed by it) as it was before the field existed."""
        return config_hash(self.identity_dict())


def _as_declared(declared: Any, value: Any) -> Any:
    """Ints in float fields become floats, so ``0`` and ``0.0`` give the same run id."""
    if declared in ("float", float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if str(declared).startswith("tuple[float") and isinstance(value, tuple):
        return tuple(float(v) for v in value)
    return value


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def config_hash(*parts: Any, length: int = 16) -> str:
    """Stable hex digest of configs (dataclasses with ``to_dict``), dicts and strings."""
    payload = [p.to_dict() if hasattr(p, "to_dict") else p for p in parts]
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:length]


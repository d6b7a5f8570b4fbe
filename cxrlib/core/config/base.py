"""The configs' common base: a dict round-trip and a stable content hash (the run id's basis).

Every field of a config that changes a result must be a field (not a global), and fields must be
plain JSON values (str, int, float, bool, None, tuples of those).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any, TypeVar

T = TypeVar("T")


class _Config:
    """Mixin: dict round-trip and a stable content hash."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _jsonable(_as_declared(f.type, getattr(self, f.name)))
                for f in dataclasses.fields(self)}  # type: ignore[arg-type]

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
        return config_hash(self)


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


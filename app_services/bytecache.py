"""Caches bounded by bytes, shared by every session of the server (issue 22).

``st.cache_resource(max_entries=...)`` bounds a cache by entries, and one entry of the app's large
objects ranges from kilobytes to tens of megabytes (a 256 px film or a 4280 x 3520 one, its lung
mask, its PNG for the viewer): 48 entries may hold 10 MB or 1.5 GB, so a department's server
grows with the films its users open. :class:`ByteCache` keeps the least recently used entries
whose sizes (:func:`size_of`) add up to at most its budget; :func:`byte_cached` decorates a
function with one, keyed like Streamlit's caches: every argument except those whose name begins
with ``_``. A value is computed once even when several sessions ask for it at once (a per-key
lock); a value larger than the whole budget is returned but not kept.

The budgets are shares of ``CXR_CACHE_MB`` (default :data:`DEFAULT_TOTAL_MB`): see
``docs/deploy.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

TOTAL_ENV = "CXR_CACHE_MB"
DEFAULT_TOTAL_MB = 1024.0


def total_mb() -> float:
    """The server's budget for its byte-bounded caches (``CXR_CACHE_MB``, default 1024 MB)."""
    try:
        value = float(os.environ.get(TOTAL_ENV, DEFAULT_TOTAL_MB))
    except ValueError:
        value = DEFAULT_TOTAL_MB
    return max(value, 1.0)


def size_of(value: Any, _seen: set[int] | None = None) -> int:
    """Bytes a cached value holds: array buffers, bytes and strings, and the fields of
    containers, dataclasses and plain objects, each object counted once."""
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return sys.getsizeof(value)
    if hasattr(value, "memory_usage") and hasattr(value, "shape"):  # pandas
        usage = value.memory_usage(deep=True)
        return int(getattr(usage, "sum", lambda: usage)())
    if hasattr(value, "to_plotly_json") and hasattr(value, "_layout"):  # a plotly figure
        return sys.getsizeof(value) + size_of([value._data, value._layout], seen)  # noqa: SLF001
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(size_of(k, seen) + size_of(v, seen)
                                          for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sys.getsizeof(value) + sum(size_of(v, seen) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sys.getsizeof(value) + sum(size_of(getattr(value, f.name), seen)
                                          for f in dataclasses.fields(value))
    if hasattr(value, "__dict__") and not isinstance(value, type):
        return sys.getsizeof(value) + size_of(vars(value), seen)
    return sys.getsizeof(value)


class ByteCache:
    """A least-recently-used cache holding at most ``max_bytes`` of values, thread-safe."""

    def __init__(self, max_bytes: int, name: str = "cache") -> None:
        self.max_bytes, self.name = int(max_bytes), name
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._computing: dict[Any, threading.Lock] = {}

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: Any) -> bool:
        return key in self._items

    def get(self, key: Any, default: Any = None) -> Any:
        """The value of ``key`` (now the most recently used), or ``default``."""
        with self._lock:
            if key not in self._items:
                return default
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Any, value: Any) -> None:
        """Keep ``value`` under ``key`` and evict the least recently used entries until the
        cache holds at most ``max_bytes``; a value larger than that is not kept."""
        size = size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def get_or_compute(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The value of ``key``, computed (once, whoever else asks meanwhile) when missing."""
        missing = object()
        value = self.get(key, missing)
        if value is not missing:
            return value
        with self._lock:
            gate = self._computing.setdefault(key, threading.Lock())
        try:
            with gate:
                value = self.get(key, missing)
                if value is missing:
                    value = compute()
                    self.put(key, value)
        finally:  # also when compute raises or a rerun stops it: no gate is left behind
            with self._lock:
                self._computing.pop(key, None)
        return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


SHARES: dict[str, float] = {}
"""Each byte-bounded cache's share of :func:`total_mb`, by name, declared through
:func:`budget` (the shares add up to at most 1: ``tests/test_app_serving.py``)."""


def budget(share: float, name: str) -> int:
    """Bytes of a cache that takes ``share`` of :func:`total_mb`, declared in :data:`SHARES`."""
    SHARES[name] = share
    return int(share * total_mb() * 2**20)


def byte_cached(share: float, *, name: str | None = None, spinner: str | None = None):
    """Decorate a function with a :class:`ByteCache` of ``share`` of :func:`total_mb`.

    The key is the function's arguments except those whose name begins with ``_`` (as
    Streamlit's caches: pass big arrays as ``_pixels`` beside a small exact key). ``spinner``:
    shown (``st.spinner``) while a missing value is computed. The wrapper's ``cache`` is the
    :class:`ByteCache`.
    """
    def decorate(fn: Callable) -> Callable:
        signature = inspect.signature(fn)
        label = name or f"{fn.__module__}.{fn.__qualname__}"
        cache = ByteCache(budget(share, label), label)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            key = tuple((k, v) for k, v in bound.arguments.items() if not k.startswith("_"))

            def compute():
                if spinner is None:
                    return fn(*args, **kwargs)
                import streamlit as st  # noqa: PLC0415

                with st.spinner(spinner):
                    return fn(*args, **kwargs)

            return cache.get_or_compute(key, compute)

        wrapper.cache = cache
        return wrapper

    return decorate

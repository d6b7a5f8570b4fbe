"""Every CSV the product writes or reads back: one writer, one reader.

* **Quoting.** Lines end in ``\\r\\n`` (RFC 4180), so the writer quotes every field holding a
  ``\\r`` or ``\\n`` as well as ``"`` or ``,``. (With ``\\n`` line ends, Python's csv module and
  pandas leave a bare ``\\r`` unquoted, and a reader splits the row there: a file named
  ``a\\rb.jpg`` became two rows of garbage, and ``evaluate`` dropped films without a word.)
* **Counts.** :func:`write_counted` records the rows it wrote beside the file; :func:`read_counted`
  and :func:`count_problem` compare (a run's ``split.csv`` and ``predictions.csv``), and
  :func:`read_csv` raises :class:`CsvCountError` when a file holds another number.
* **For people.** A CSV meant to be opened in a spreadsheet (``for_people=True``: ``predict``'s
  output, ``explain``'s table, ``evaluate``'s files, the reviews export, the app's downloads)
  has every text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
  prefixed with ``'`` (OWASP, CSV injection), so a spreadsheet shows it as text instead of
  running it as a formula. Files the product reads back (a run's ``split.csv``,
  ``predictions.csv``, ``history.csv``; ``scan --manifest``) are written as they are.
"""
from __future__ import annotations

import csv
import os
from typing import Any, Iterable, Mapping

import pandas as pd

LINE_END = "\r\n"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
"""A text cell starting with one of these is run by spreadsheets as a formula (OWASP)."""


class CsvCountError(ValueError):
    """A CSV file whose row count is not the one written (damaged or edited from outside)."""


def neutralise(value: Any) -> Any:
    """``value`` as a spreadsheet shows it as text: a string starting with a formula
    character gets a leading ``'``; anything else is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_text(frame: pd.DataFrame, *, for_people: bool) -> str:
    """The CSV text of ``frame`` (no index), quoted as the module doc says.

    Args:
        frame: the table.
        for_people: neutralise formula-like text cells (a file for spreadsheets), or write the
            cells as they are (a file the product reads back).
    """
    if for_people:
        frame = frame.copy()
        for column in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[column]):
                frame[column] = frame[column].map(neutralise)
        frame.columns = [neutralise(str(c)) for c in frame.columns]
    return frame.to_csv(index=False, lineterminator=LINE_END)


class RowWriter:
    """Rows streamed into an open text file by the same rules as :func:`csv_text` (the file
    opened with ``newline=""``); a missing value (None, NaN) is an empty cell."""

    def __init__(self, fh, fieldnames: Iterable[str], *, for_people: bool):
        self._writer = csv.DictWriter(fh, fieldnames=list(fieldnames), lineterminator=LINE_END)
        self._people = for_people
        self._writer.writeheader()

    def write(self, row: Mapping[str, Any]) -> None:
        cells = {k: "" if v is None or (isinstance(v, float) and v != v) else v for k, v in row.items()}
        if self._people:
            cells = {k: neutralise(v) for k, v in cells.items()}
        self._writer.writerow(cells)


ROWS_FILE = "csv_rows.json"
"""Beside counted CSVs: ``{"split.csv": 120, ...}``, the rows written to each."""
_COUNT_CHECKS: dict[tuple, str | None] = {}


def write_counted(folder: str | os.PathLike, name: str, frame: pd.DataFrame) -> None:
    """Write ``folder/name`` (a machine file: :func:`csv_text` as it is) atomically, then record
    its row count in ``folder/csv_rows.json`` for :func:`read_counted` and :func:`count_problem`.
    (For files written once or rarely: a reader between the two writes sees the old count.)"""
    from cxrlib.core.fsutil import read_json, write_json_atomic, write_text_atomic  # noqa: PLC0415

    write_text_atomic(os.path.join(folder, name), csv_text(frame, for_people=False))
    counts = read_json(os.path.join(folder, ROWS_FILE), default={})
    write_json_atomic(os.path.join(folder, ROWS_FILE),
                      {**(counts if isinstance(counts, dict) else {}), name: len(frame)})


def _written_rows(folder: str | os.PathLike, name: str) -> int | None:
    from cxrlib.core.fsutil import read_json  # noqa: PLC0415

    try:
        counts = read_json(os.path.join(folder, ROWS_FILE), default={})
    except ValueError as exc:
        raise CsvCountError(f"{ROWS_FILE} is damaged ({exc})") from None
    return counts.get(name) if isinstance(counts, dict) else None


def read_counted(folder: str | os.PathLike, name: str) -> pd.DataFrame:
    """:func:`read_csv` of ``folder/name`` with the row count :func:`write_counted` recorded
    (none recorded: not checked, as for files written before counts were).

    Raises:
        FileNotFoundError: no such file.
        CsvCountError: the file holds another number of rows.
    """
    return read_csv(os.path.join(folder, name), rows=_written_rows(folder, name))


def count_problem(folder: str | os.PathLike, name: str) -> str | None:
    """Why ``folder/name`` does not hold the rows written, or None (also when it is absent);
    remembered per file size and time, so listing many runs reads each file once."""
    path = os.path.join(folder, name)
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (path, st.st_size, st.st_mtime_ns, os.path.getmtime(os.path.join(folder, ROWS_FILE))
           if os.path.exists(os.path.join(folder, ROWS_FILE)) else None)
    if key not in _COUNT_CHECKS:
        if len(_COUNT_CHECKS) > 4096:
            _COUNT_CHECKS.clear()
        try:
            read_counted(folder, name)
            _COUNT_CHECKS[key] = None
        except (CsvCountError, ValueError, OSError) as exc:  # a parse error is damage too
            _COUNT_CHECKS[key] = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
    return _COUNT_CHECKS[key]


def read_csv(path: str | os.PathLike, *, rows: int | None = None) -> pd.DataFrame:
    """A CSV file the product wrote, as a table (an empty cell is NaN; text stays text).

    Args:
        path: the file.
        rows: the number of rows written, when known; another number read raises.

    Raises:
        FileNotFoundError: no such file.
        CsvCountError: the file does not hold ``rows`` rows.
    """
    frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    if rows is not None and len(frame) != rows:
        raise CsvCountError(f"holds {len(frame)} rows where {rows} were written")
    return frame

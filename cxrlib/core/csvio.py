"""Every CSV the product writes or reads back: one writer, one reader.

* **Quoting.** Lines end in ``\\r\\n`` (RFC 4180), so the writer quotes every field holding a
  ``\\r`` or ``\\n`` as well as ``"`` or ``,``. (With ``\\n`` line ends, Python's csv module and
  pandas leave a bare ``\\r`` unquoted, and a reader splits the row there: a file named
  ``a\\rb.jpg`` became two rows of garbage, and ``evaluate`` dropped films without a word.)
* **Counts.** :func:`read_csv` takes the number of rows that were written (when the writer
  recorded it) and raises :class:`CsvCountError` when the file holds another number.
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

"""CSV files a spreadsheet opens as data, never as formulas (every CSV the study writes).

Following the OWASP guidance on CSV injection: every text cell is quoted, and a text cell that a
spreadsheet could read as a formula or a command gets a ``'`` in front. That is a cell starting
with ``=``, ``+``, ``-``, ``@``, ``|``, their full-width forms (``＝``, ``＋``, ``－``, ``＠``,
``｜``), tab, carriage return or line feed, or any of these after leading spaces (some
spreadsheets skip them). Numbers and booleans stay as they are. Quoting also keeps a line break
inside a file name in its cell instead of starting a new row.

No pandas or torch needed to import it (the server uses it); a table is a pandas DataFrame or
any object with ``columns`` and ``itertuples``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

# Characters that start a formula (or a DDE command) in Excel, LibreOffice or Google Sheets.
FORMULA_START = frozenset("=+-@|\t\r\n\uff1d\uff0b\uff0d\uff20\uff5c")


def safe_cell(value: object) -> object:
    """``value`` as a CSV cell: text neutralised (``'`` in front) when it could run as a formula;
    numbers and booleans unchanged; None and NaN empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        return value
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        return safe_cell(value.item())
    text = str(value)
    if text[:1] in FORMULA_START or text.lstrip()[:1] in FORMULA_START:
        return "'" + text
    return text


def csv_rows(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text: a header and ``rows``, every text cell quoted and neutralised, numbers bare,
    missing values empty."""
    lines = [",".join(_field(h) for h in header)]
    lines += [",".join(_field(v) for v in row) for row in rows]
    return "\n".join(lines) + "\n"


def _field(value: object) -> str:
    cell = safe_cell(value)
    if isinstance(cell, str):
        return '"' + cell.replace('"', '""') + '"' if cell else ""
    return repr(cell)


def csv_table(table) -> str:
    """CSV text of a DataFrame (without its index), every text cell quoted and neutralised."""
    columns = [str(c) for c in table.columns]
    return csv_rows(columns, table.itertuples(index=False, name=None))

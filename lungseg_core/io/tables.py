"""CSV text for result tables: empty cells for missing values, floats rounded for people to read."""

from __future__ import annotations

import csv
import io


def rows_to_csv_text(rows: list[dict], columns: list[str], float_digits: int = 3) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else (f"{v:.{float_digits}f}" if isinstance(v, float) else v)
                         for k, v in row.items()})
    return buffer.getvalue()

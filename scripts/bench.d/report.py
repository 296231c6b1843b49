"""The text table and the CSV of a run."""

from __future__ import annotations

import csv

from measure import Row


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.1f} s"
    if unit in ("MB/s", "msg/s"):
        return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{value:.1f} {unit}"


def mailfs_cell(row: Row) -> str:
    if row.mailfs_text is not None:
        return row.mailfs_text
    return format_value(row.mailfs_shown, row.unit)


def reference_cell(row: Row) -> str:
    if row.status == "not measured":
        return row.note
    if row.ref_text is not None:
        return row.ref_text
    return format_value(row.ref_shown, row.unit)


def ratio_cell(row: Row) -> str:
    if row.target.mode == "value" and row.unit == "B/msg":
        return "—"
    ratio = row.ratio
    return "—" if ratio is None else f"{ratio:.2f}×"


def met_cell(row: Row) -> str:
    if row.status == "FAILED":
        return "FAILED"
    if row.status == "not measured":
        return "—"
    return row.met or "—"


def table(rows: list[Row]) -> str:
    """workload | mailfs | reference | ratio | target | met?, then notes."""
    header = ("workload", "mailfs", "reference", "ratio", "target", "met?")
    lines = []
    body = []
    for row in rows:
        body.append((row.workload + f"  [vs {row.reference}]" if row.reference != "—"
                     else row.workload,
                     mailfs_cell(row), reference_cell(row), ratio_cell(row),
                     row.target.describe(), met_cell(row)))
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    widths[0] = min(widths[0], 100)

    def fmt(cells) -> str:
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    lines.append(fmt(header))
    lines.append("-+-".join("-" * w for w in widths))
    lines.extend(fmt(r) for r in body)
    notes = [(row.workload, row.note) for row in rows
             if row.note and row.status != "not measured"]
    if notes:
        lines.append("")
        lines.append("notes:")
        lines.extend(f"  {workload}: {note}" for workload, note in notes)
    return "\n".join(lines)


def write_csv(path: str, rows: list[Row]) -> None:
    """One line per workload: the table's cells, the medians in seconds,
    and every repetition (and the warm-up) in seconds."""
    fields = ["workload", "reference", "status", "unit", "mailfs", "reference_value", "ratio",
              "target", "met", "mailfs_median_s", "reference_median_s", "mailfs_work",
              "reference_work", "mailfs_warmup_s", "reference_warmup_s", "mailfs_reps_s",
              "reference_reps_s", "extra", "note"]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({
                "workload": row.workload,
                "reference": row.reference,
                "status": row.status,
                "unit": row.unit,
                "mailfs": mailfs_cell(row),
                "reference_value": reference_cell(row),
                "ratio": "" if row.ratio is None or row.unit == "B/msg" else f"{row.ratio:.4f}",
                "target": row.target.describe(),
                "met": row.met,
                "mailfs_median_s": _num(row.mailfs_median),
                "reference_median_s": _num(row.ref_median),
                "mailfs_work": row.mailfs_work,
                "reference_work": row.ref_work,
                "mailfs_warmup_s": _num(row.mailfs_warmup),
                "reference_warmup_s": _num(row.ref_warmup),
                "mailfs_reps_s": ";".join(f"{t:.6f}" for t in row.mailfs_times),
                "reference_reps_s": ";".join(f"{t:.6f}" for t in row.ref_times),
                "extra": ";".join(f"{k}={'/'.join(f'{x:.6g}' for x in v)}"
                                  for k, v in row.raw.items()),
                "note": row.note,
            })


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6f}"

"""Repetitions, medians, ratios and targets: one `Row` per line of the table.

Every paired workload is run by `alternate`: a warm-up of each side, then
`reps` repetitions, each running every side once, with the order of the
sides rotating from one repetition to the next, so that machine noise (the
machine is shared) and order effects hit all sides alike. A side is a
function that prepares what it needs (untimed), runs the workload, times
only the workload itself, checks that the work was done (raising
VerificationError otherwise) and returns the seconds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Callable

from services import VerificationError


@dataclass
class Target:
    """`ratio OP value`, e.g. Target("<=", 1.0, "time") for "≤ 1.0× the
    reference's time".

    mode says how the ratio is formed from the two medians:
      "time"    mailfs time / reference time (lower is better)
      "speedup" reference time / mailfs time (higher is better)
      "rate"    mailfs rate / reference rate, rates = work / time
      "value"   no reference: the mailfs value itself is compared
    """
    op: str
    value: float
    mode: str
    text: str = ""

    def describe(self) -> str:
        if self.text:
            return self.text
        symbol = "≤" if self.op == "<=" else "≥"
        return f"{symbol} {self.value:g}×"

    def met(self, ratio: float) -> bool:
        return ratio <= self.value if self.op == "<=" else ratio >= self.value


@dataclass
class Row:
    """One workload of the table, with every raw repetition."""
    workload: str
    reference: str
    target: Target
    unit: str = "s"               # unit shown for the sides: "s", "MB/s", "msg/s", ...
    mailfs_work: float = 1.0      # bytes or messages per mailfs repetition (for rates)
    ref_work: float = 1.0
    mailfs_times: list[float] = field(default_factory=list)
    ref_times: list[float] = field(default_factory=list)
    mailfs_warmup: float | None = None
    ref_warmup: float | None = None
    status: str = "ok"            # "ok", "FAILED", "not measured"
    note: str = ""
    # Rows that are not a median of paired times (RSS, cost per entry) set
    # these directly.
    mailfs_text: str | None = None
    ref_text: str | None = None
    value: float | None = None
    done: bool = False            # every measurement of the row is in
    raw: dict = field(default_factory=dict)  # extra raw numbers for the CSV

    def fail(self, reason: str) -> "Row":
        self.status = "FAILED"
        self.note = reason
        return self

    def skip(self, reason: str) -> "Row":
        self.status = "not measured"
        self.note = reason
        return self

    @property
    def mailfs_median(self) -> float | None:
        return statistics.median(self.mailfs_times) if self.mailfs_times else None

    @property
    def ref_median(self) -> float | None:
        return statistics.median(self.ref_times) if self.ref_times else None

    def _shown(self, median: float | None, work: float) -> float | None:
        if median is None:
            return None
        if self.unit == "s":
            return median
        return work / median if median > 0 else float("inf")

    @property
    def mailfs_shown(self) -> float | None:
        return self.value if self.value is not None else self._shown(self.mailfs_median,
                                                                     self.mailfs_work)

    @property
    def ref_shown(self) -> float | None:
        return self._shown(self.ref_median, self.ref_work)

    @property
    def ratio(self) -> float | None:
        mode = self.target.mode
        if mode == "value":
            return self.value
        m, r = self.mailfs_median, self.ref_median
        if m is None or r is None or m <= 0 or r <= 0:
            return None
        if mode == "time":
            return m / r
        if mode == "speedup":
            return r / m
        if mode == "rate":
            return (self.mailfs_work / m) / (self.ref_work / r)
        raise ValueError(mode)

    @property
    def met(self) -> str:
        if self.status != "ok":
            return ""
        ratio = self.ratio
        if ratio is None:
            return ""
        return "yes" if self.target.met(ratio) else "NO"


def alternate(reps: int, sides: dict[str, Callable[[], float]], log,
              label: str) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Runs every side once as a warm-up, then `reps` times, rotating the
    order each repetition. Returns (times per side, warm-up time per side).
    A VerificationError propagates (the caller marks the row FAILED)."""
    names = list(sides)
    warmups: dict[str, float] = {}
    for name in names:
        warmups[name] = sides[name]()
    log(f"  {label}: warm-up " + ", ".join(f"{n} {warmups[n]:.3f} s" for n in names))
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(reps):
        shift = rep % len(names)
        order = names[shift:] + names[:shift]
        for name in order:
            times[name].append(sides[name]())
        log(f"  {label}: rep {rep + 1}/{reps} " +
            ", ".join(f"{n} {times[n][-1]:.3f} s" for n in names))
    return times, warmups


def fill_pair(row: Row, times: dict[str, list[float]], warmups: dict[str, float],
              mailfs: str = "mailfs", reference: str = "reference") -> Row:
    row.mailfs_times, row.ref_times = times[mailfs], times[reference]
    row.mailfs_warmup, row.ref_warmup = warmups[mailfs], warmups[reference]
    row.done = True
    return row


def measure_rows(rows: list[Row], log, body: Callable[[], None]) -> None:
    """Runs `body`, which measures `rows` (and sets `done` on each it
    completes). An exception (VerificationError: the work was not done;
    anything else: the workload broke) marks every row not yet done FAILED,
    with the reason, and the run goes on with the next workload."""
    try:
        body()
    except Exception as e:  # noqa: BLE001 - one broken workload must not end the run
        reason = str(e) if isinstance(e, VerificationError) else f"{type(e).__name__}: {e}"
        log(f"  FAILED: {reason}")
        for row in rows:
            if row.status == "ok" and not row.done:
                row.fail(reason)

"""Tables for the report: measured numbers beside a spec's paper numbers, deltas, best per column,
counts and protocol options. Plain data; the templates do the HTML."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from vqfr.report.runs import MethodRun
from vqfr.report.specs import Cell, Row, Spec, lower_is_better, metric_label

DECIMALS = {"psnr": 2, "ssim": 4, "lpips": 4, "niqe": 3, "fid": 2, "deg": 2, "ids": 3, "lmd": 3,
            "params_m": 1, "tflops": 3, "latency_s": 3}


def format_value(metric: str, value: float | None) -> str:
    if value is None:
        return ""
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)
    if value != 0 and abs(value) < 1e-3:   # synthetic-weight FID/LPIPS are ~1e-8 .. 1e-4
        return f"{value:.3e}"
    return f"{value:.{DECIMALS.get(metric, 4)}f}"


def options_text(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(options.items())) or "defaults"


@dataclass
class Column:
    dataset: str
    metric: str
    lower_is_better: bool | None

    @property
    def label(self) -> str:
        return metric_label(self.metric)

    @property
    def arrow(self) -> str:
        return {True: "↓", False: "↑", None: ""}[self.lower_is_better]


@dataclass
class TableCell:
    metric: str
    measured: float | None = None
    paper: Cell | None = None
    best_measured: bool = False
    best_paper: bool = False
    run: MethodRun | None = None            # the run behind the measured value
    ci: dict[str, Any] | None = None        # its interval (summary.json metric_info.<m>.ci)
    tied_best: bool = False                 # not significantly different from the best

    @property
    def has_interval(self) -> bool:
        return bool(self.ci) and self.ci.get("low") is not None and self.measured is not None

    @property
    def half_width(self) -> float | None:
        return (self.ci["high"] - self.ci["low"]) / 2 if self.has_interval else None

    @property
    def interval_text(self) -> str:
        if not self.has_interval:
            return ""
        return (f"{self.ci['level']:g} interval [{format_value(self.metric, self.ci['low'])}, "
                f"{format_value(self.metric, self.ci['high'])}] ({self.ci['method']}"
                + (f", {self.ci['resamples']} resamples" if self.ci.get("resamples") else "")
                + (f"; {self.ci['note']}" if self.ci.get("note") else "") + ")")

    @property
    def paper_inside(self) -> bool | None:
        """Whether the paper's value lies inside our interval (None: nothing to compare)."""
        if not self.has_interval or self.paper is None or self.paper.value is None:
            return None
        return self.ci["low"] <= self.paper.value <= self.ci["high"]

    @property
    def delta(self) -> float | None:
        if self.measured is None or self.paper is None or self.paper.value is None:
            return None
        return self.measured - self.paper.value

    def text(self, which: str) -> str:
        if which == "measured":
            return format_value(self.metric, self.measured)
        if which == "half_width":
            return format_value(self.metric, self.half_width)
        if which == "paper":
            return format_value(self.metric, self.paper.value if self.paper else None)
        delta = self.delta
        return "" if delta is None else ("+" if delta >= 0 else "") + format_value(self.metric, delta)


@dataclass
class TableRow:
    label: str
    cells: list[TableCell]
    runs: list[MethodRun] = field(default_factory=list)   # the measured runs behind the row
    spec_row: Row | None = None


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[TableRow]
    notes: list[str]          # counts, protocol options (measured vs. paper), provenance hints
    spec: Spec | None = None

    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(c.dataset for c in self.columns))

    @property
    def has_paper(self) -> bool:
        return self.spec is not None

    @property
    def sources(self) -> list[tuple[str, str]]:
        """Distinct (status, source) of the paper cells, in table order."""
        cells = [c.paper for row in self.rows for c in row.cells if c.paper is not None]
        return list(dict.fromkeys((c.status, c.source) for c in cells))


def _same(a: Any, b: Any) -> bool:
    """Option values compare as lists: the command line spells a one-level tuple as a scalar
    (``twm_disabled=32``), JSON turns tuples into lists."""
    def as_list(value: Any) -> list:
        return list(value) if isinstance(value, (list, tuple)) else [value]

    return as_list(a) == as_list(b)


def match_run(row: Row, dataset: str, runs: list[MethodRun]) -> MethodRun | None:
    """The run that reproduces a spec row: same model and dataset, the row's options in force;
    among several, the one with the fewest other options switched on. Summaries record every
    option, so an ablation's baseline (``twm_disabled=[]``) and its variants (``[32]``) both carry
    the key; an empty or zero value counts as off."""
    candidates = [r for r in runs if r.name == row.model and r.dataset == dataset
                  and all(_same(r.options.get(k), v) for k, v in row.options.items())]

    def options_on(run: MethodRun) -> int:
        return sum(1 for k, v in run.options.items() if k not in row.options and v)

    return min(candidates, key=options_on, default=None)


def _mark_best(rows: list[TableRow], columns: list[Column]) -> None:
    for j, column in enumerate(columns):
        if column.lower_is_better is None:
            continue
        pick = min if column.lower_is_better else max
        for which in ("measured", "paper"):
            values = [(getattr(r.cells[j], which) if which == "measured" else
                       (r.cells[j].paper.value if r.cells[j].paper else None)) for r in rows]
            present = [v for v in values if v is not None]
            if len(present) < 2:
                continue
            best = pick(present)
            for row, value in zip(rows, values):
                if value == best:
                    setattr(row.cells[j], f"best_{which}", True)


def _column_notes(columns: list[Column], rows: list[TableRow], spec: Spec | None) -> list[str]:
    notes = []
    for metric in dict.fromkeys(c.metric for c in columns):
        infos = [(run, run.summary.get("metric_info", {}).get(metric)) for row in rows
                 for run in row.runs]
        infos = [(run, info) for run, info in infos if info]
        counts = sorted({info.get("count") for _, info in infos if info.get("count") is not None})
        measured_options = [info.get("options", {}) for _, info in infos]
        text = metric_label(metric)
        if counts:
            text += f": {', '.join(map(str, counts))} images"
        unmeasured = sorted({len(info["unmeasured"]) for _, info in infos
                             if info.get("unmeasured")})
        if unmeasured:
            text += (f" ({', '.join(map(str, unmeasured))} without a value, left out of the "
                     "mean: see metric_info in summary.json)")
        if measured_options:
            distinct = list({options_text(o): o for o in measured_options}.values())
            text += "; measured with " + " | ".join(options_text(o) for o in distinct)
        if spec is not None and metric in spec.metric_options:
            paper = spec.metric_options[metric]
            text += f"; paper protocol {options_text(paper)}"
            clash = sorted({k for o in measured_options for k, v in paper.items()
                            if k in o and not _same(o[k], v)})
            if clash:
                text += f" — DIFFERS in {', '.join(clash)}"
        if counts or measured_options or (spec and metric in spec.metric_options):
            notes.append(text)
    return notes


def _attach_statistics(rows: list[TableRow], columns: list[Column],
                       statistics: dict[str, Any] | None) -> None:
    """Each measured cell's interval, and the mark on values not significantly different from
    their column's best (``statistics``: dataset -> ``vqfr.stats`` DatasetStatistics)."""
    if not statistics:
        return
    for j, column in enumerate(columns):
        stats = statistics.get(column.dataset)
        if stats is None:
            continue
        cells = [row.cells[j] for row in rows if row.cells[j].run is not None
                 and row.cells[j].measured is not None]
        for cell in cells:
            cell.ci = stats.intervals.get(cell.run.key, {}).get(column.metric)
        if column.lower_is_better is None:
            continue
        values = {cell.run.key: cell.measured for cell in cells}
        tied = stats.tied_with_best(column.metric, list(values), values, column.lower_is_better)
        for cell in cells:
            cell.tied_best = bool(tied.get(cell.run.key))


def spec_table(spec: Spec, runs: list[MethodRun],
               statistics: dict[str, Any] | None = None) -> Table:
    columns = [Column(d, m, lower_is_better(m)) for d, m in spec.columns]
    rows = []
    for spec_row in spec.rows:
        cells, row_runs = [], []
        for column in columns:
            run = match_run(spec_row, column.dataset, runs) if spec_row.model else None
            if run is not None and run not in row_runs:
                row_runs.append(run)
            cells.append(TableCell(column.metric,
                                   run.metrics.get(column.metric) if run else None,
                                   spec_row.values.get((column.dataset, column.metric)),
                                   run=run))
        rows.append(TableRow(spec_row.label, cells, row_runs, spec_row))
    _mark_best(rows, columns)
    _attach_statistics(rows, columns, statistics)
    return Table(spec.title, columns, rows, _column_notes(columns, rows, spec), spec)


@dataclass
class SignificanceMatrix:
    """One metric's pairwise comparisons on one dataset: ``cells[i][j]`` compares row method i
    with column method j (difference i - j, Holm-adjusted p), None on the diagonal."""

    dataset: str
    metric: str
    labels: list[str]
    cells: list[list[dict[str, Any] | None]]
    level: float


def significance_matrices(dataset: str, runs: list[MethodRun], statistics: Any
                          ) -> list[SignificanceMatrix]:
    matrices = []
    metrics = dict.fromkeys(c.metric for c in statistics.comparisons)
    for metric in metrics:
        members = [r for r in runs if metric in r.metrics]
        direction = next((r.lower_is_better(metric) for r in members
                          if r.lower_is_better(metric) is not None), lower_is_better(metric))
        cells = []
        for a in members:
            row = []
            for b in members:
                c = None if a is b else statistics.comparison(metric, a.key, b.key)
                if c is None:
                    row.append(None)
                    continue
                significant = c.p_holm is not None and c.p_holm < statistics.options.alpha
                better = (c.diff < 0) == bool(direction) if significant else None
                row.append({"diff": format_value(metric, c.diff),
                            "p": "" if c.p_holm is None else f"{c.p_holm:.3g}",
                            "class": ("better" if better else "worse") if significant
                            else "tie",
                            "title": f"{a.label} − {b.label}: {format_value(metric, c.diff)}, "
                                     f"interval [{format_value(metric, c.low)}, "
                                     f"{format_value(metric, c.high)}], p = {c.p}, "
                                     f"Holm-adjusted p = {c.p_holm}"})
            cells.append(row)
        if len(members) >= 2:
            matrices.append(SignificanceMatrix(dataset, metric, [r.label for r in members],
                                               cells, statistics.options.level))
    return matrices


def measured_tables(runs: list[MethodRun],
                    statistics: dict[str, Any] | None = None) -> list[Table]:
    """One table per dataset with every method found and every metric it has."""
    tables = []
    for dataset in dict.fromkeys(r.dataset for r in runs):
        ds_runs = [r for r in runs if r.dataset == dataset]
        metrics = list(dict.fromkeys(m for r in ds_runs for m in r.metrics))
        columns = []
        for metric in metrics:
            direction = next((r.lower_is_better(metric) for r in ds_runs
                              if r.lower_is_better(metric) is not None), lower_is_better(metric))
            columns.append(Column(dataset, metric, direction))
        rows = [TableRow(r.label, [TableCell(c.metric, r.metrics.get(c.metric), run=r)
                                   for c in columns], [r]) for r in ds_runs]
        _mark_best(rows, columns)
        _attach_statistics(rows, columns, statistics)
        tables.append(Table(f"Measured on {dataset}", columns, rows,
                            _column_notes(columns, rows, None)))
    return tables

"""Per-trial results: what a run produces, and where its blocks of trials go.

The kernels write three arrays per chunk of trials (revenue and won deals by segment,
bookings by rep). :class:`Layout` names every output variable, its dimensions and
coordinates; a *sink* receives the chunks:

* :class:`MemorySink` keeps every trial in memory, for :func:`forecaster.simulate` and its
  xarray Dataset;
* :class:`NetCDFSink` writes each chunk straight into a NetCDF4 file (through h5netcdf), so
  a run of any number of trials holds only one chunk in memory.

Summaries read results back one column of trials at a time through :class:`Columns`, from
memory or from the file alike, so quantiles stay exact and memory stays bounded.
:meth:`Layout.file_bytes` bounds the file's size before anything is written.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from forecaster.engine.interface import NONE
from forecaster.engine.plan import AFTER_SALE_FLOWS, SOURCES, Plan
from forecaster.engine.seeding import BLOCK_TRIALS
from forecaster.results.commission import (
    EXTRA_VARIABLES,
    commission_by_period,
    commission_extras,
    commission_per_quota_period,
    extra_names,
)
from forecaster.results.files import GuardedFile, checkpoint
from forecaster.scenario.model import Scenario
from forecaster.version import __version__

EPOCH = date(1970, 1, 1)
TIME_UNITS = "days since 1970-01-01"

COLUMNS_BUDGET = 256 << 20
"""Memory for the columns :class:`Columns` reads at once [bytes] (at least one column)."""
ROW_BLOCK_INPUTS = 256 << 20
"""Above this size [bytes], the summary reads the per-trial ``inputs`` a block of trials at a time."""
FILE_OVERHEAD = 16 << 10
"""Bound of a NetCDF file's headers, coordinates and attributes [bytes], besides per-variable bounds."""
VARIABLE_OVERHEAD = 4 << 10
"""Bound of one variable's header, attributes and dimension references [bytes]."""
CHUNK_OVERHEAD = 96
"""Bound of the index entry of one chunk of a variable [bytes]."""


def stored_dtype(dtype: str, precision: str = "float64") -> str:
    """How a variable of ``dtype`` is stored at ``precision`` ("float64" or "float32")."""
    return "f4" if precision == "float32" and dtype == "f8" else dtype


@dataclass(frozen=True)
class Variable:
    """One output variable: dimensions (``trial`` first when per trial), dtype and attributes."""

    name: str
    dims: tuple
    dtype: str
    attrs: dict = field(default_factory=dict)


@dataclass
class Layout:
    """Names, coordinates and shapes of a run's outputs, read from its scenario and plan.

    ``trials``, ``periods`` and ``quota_periods`` (first day within the horizon of each
    reporting and commission period), ``segments``, ``reps``, ``quotas`` [currency],
    ``earn_period`` and ``quantities`` come from the plan; ``attrs`` name the run.
    """

    scenario: Scenario
    plan: Plan
    attrs: dict

    trials = property(lambda self: self.scenario.trials)
    periods = property(lambda self: list(self.plan.periods.starts))
    quota_periods = property(lambda self: list(self.plan.quota_periods.starts))
    segments = property(lambda self: self.plan.segment_names)
    reps = property(lambda self: self.plan.rep_names)
    quotas = property(lambda self: self.plan.quotas)
    earn_period = property(lambda self: self.plan.earn_period)
    quantities = property(lambda self: self.plan.quantity_names)

    @classmethod
    def of(cls, sc: Scenario, plan: Plan) -> Layout:
        attrs = {"scenario": sc.name, "seed": sc.seed if sc.seed < 2 ** 63 else str(sc.seed),
                 "trials": sc.trials, "start": sc.start.isoformat(), "end": sc.end.isoformat(),
                 "report_by": sc.report_by, "currency": sc.currency or "", "scenario_sha256": sc.sha256,
                 "forecaster_version": __version__}
        if sc.commission:
            attrs["commission_period"] = sc.commission.period
        if sc.fiscal_year_start is not None:
            attrs["fiscal_year_start"] = sc.fiscal_year_start
        return cls(scenario=sc, plan=plan, attrs=attrs)

    @property
    def quota_dim(self) -> str:
        return "quota_period" if self.scenario.commission else "period"

    @property
    def unit(self) -> str:
        return self.scenario.currency or "currency"

    def variables(self) -> list[Variable]:
        """The per-trial variables, in the order they are written."""
        u = self.unit
        out = [Variable("revenue", ("trial", "period"), "f8", {"units": u, "long_name": "value of deals won"}),
               Variable("won_deals", ("trial", "period"), "i4", {"units": "deals", "long_name": "deals won"}),
               Variable("revenue_by_segment", ("trial", "period", "segment"), "f8", {"units": u}),
               Variable("won_deals_by_segment", ("trial", "period", "segment"), "i4", {"units": "deals"}),
               Variable("inputs", ("trial", "segment", "quantity"), "f8",
                        {"long_name": "rates and probabilities drawn for each trial (leads: the per_day, "
                                      "per_week or per_month rate, or the cost per lead)"})]
        if self.reps:
            out.append(Variable("bookings", ("trial", self.quota_dim, "rep"), "f8",
                                {"units": u, "long_name": "value of deals won by each rep"}))
        if self.scenario.commission and self.scenario.commission.base == "total_bookings" and self.plan.has_customers:
            out.append(Variable("commission_bookings", ("trial", self.quota_dim, "rep"), "f8",
                                {"units": u, "long_name": "what the plan pays on (commission.base: total_bookings): "
                                                          "deals won plus the renewals and repeat purchases of each "
                                                          "rep's customers"}))
        if self.scenario.commission:
            out.append(Variable("commission", ("trial", "period", "rep"), "f8",
                                {"units": u, "long_name": "commission paid, in the period it is earned"}))
            out.append(Variable("commission_by_quota_period", ("trial", "quota_period", "rep"), "f8", {"units": u}))
            out += [Variable(name, ("trial", *EXTRA_VARIABLES[name][0]), "f8",  # v2 D
                             {"units": u, "long_name": EXTRA_VARIABLES[name][1]}) for name in extra_names(self.scenario)]
        if self.plan.has_customers or self.plan.has_stage_values:
            for name, (kind, unit, meaning) in AFTER_SALE_VARIABLES.items():
                if not self.plan.has_customers and name not in ("stage_revenue", "total_bookings"):
                    continue  # v2 A.3: total_bookings without the rest, in a file with stage values only
                if not self.plan.has_stage_values and name == "stage_revenue":
                    continue
                attrs = {"units": u if unit == "currency" else unit, "long_name": meaning, "kind": kind}
                dtype = "f8" if unit == "currency" else "i4"
                out.append(Variable(name, ("trial", "period"), dtype, attrs))
                out.append(Variable(f"{name}_by_segment", ("trial", "period", "segment"), dtype, attrs))
        if self.plan.counting:  # v2 F1
            dims = ("trial", "period", "segment", "stage")
            if self.scenario.outputs.stage_entries:
                out.append(Variable("stage_entries", dims, "i4", {
                    "units": "leads", "long_name": "entries into each stage, dated at the entry (an open deal's "
                                                   "current stage is not one); 0 at stages a segment does not pass"}))
            if self.scenario.outputs.losses:
                out.append(Variable("losses", dims, "i4", {
                    "units": "leads", "long_name": "leads lost at each stage, dated when they are given up"}))
        if self.plan.counting_leads:  # v2 E.3
            attrs = {"units": "leads", "long_name": "leads arriving (new leads on their arrival day and event "
                                                    "leads on their date; open pipeline deals are not leads)"}
            out.append(Variable("leads", ("trial", "period"), "i4", attrs))
            out.append(Variable("leads_by_segment", ("trial", "period", "segment"), "i4", attrs))
        if self.plan.spend is not None:
            attrs = {"units": u, "long_name": "spend: the budget, cost.per_lead x leads, cost.per_month, "
                                              "cost.per_won x won deals and the events' costs"}
            out.append(Variable("spend", ("trial", "period"), "f8", attrs))
            out.append(Variable("spend_by_segment", ("trial", "period", "segment"), "f8", attrs))
        if self.plan.by_source:  # v2 F12
            out.append(Variable("revenue_by_source", ("trial", "period", "source"), "f8",
                                {"units": u, "long_name": "value of deals won, by source (pipeline, new_leads, "
                                                          "events); sums to revenue"}))
            out.append(Variable("won_deals_by_source", ("trial", "period", "source"), "i4",
                                {"units": "deals", "long_name": "deals won, by source; sums to won_deals"}))
        if self.plan.has_customers:
            out.append(Variable("clv", ("trial", "segment"), "f8", {
                "units": u, "long_name": "customer lifetime value: expected discounted net bookings of one customer "
                                         "of the segment, given the trial's after-sale draws (NaN: no customer block)"}))
        return out

    def sizes(self) -> dict:
        sizes = {"trial": self.trials, "period": len(self.periods), "segment": len(self.segments),
                 "quantity": len(self.quantities)}
        if self.reps:
            sizes["rep"] = len(self.reps)
        if self.scenario.commission:
            sizes["quota_period"] = len(self.quota_periods)
        if self.plan.counting:
            sizes["stage"] = len(self.plan.stage_names)
        if self.plan.by_source:
            sizes["source"] = len(SOURCES)
        return sizes

    def per_trial_bytes(self, precision: str = "float64") -> int:
        """Bytes each trial adds to the per-trial variables and the ``trial`` coordinate."""
        sizes = self.sizes()
        return 8 + sum(np.dtype(stored_dtype(v.dtype, precision)).itemsize
                       * int(np.prod([sizes[d] for d in v.dims[1:]], dtype=np.int64)) for v in self.variables())

    def file_bytes(self, precision: str = "float64", chunk_trials: int | None = None) -> int:
        """An upper bound of the uncompressed NetCDF file's size [bytes].

        The data, plus bounds of the headers (:data:`FILE_OVERHEAD`, :data:`VARIABLE_OVERHEAD`
        per variable, the coordinates' values) and of the chunk index (:data:`CHUNK_OVERHEAD`
        per chunk). Variables are stored in chunks of ``chunk_trials`` trials (all trials when
        fewer) and HDF5 allocates the last chunk whole, so the trials count rounded up to whole
        chunks; the ``trial`` coordinate is stored contiguously.
        """
        variables = self.variables()
        rows = max(1, min(chunk_trials or self.trials, self.trials))
        chunks = -(-self.trials // rows)
        coords = sum(8 * len(values) + 64 * len(values) for values, _ in self.coords().values())
        return (chunks * rows * (self.per_trial_bytes(precision) - 8) + 8 * self.trials + FILE_OVERHEAD + coords
                + VARIABLE_OVERHEAD * (len(variables) + len(self.coords()) + len(self.statics()) + 1)
                + CHUNK_OVERHEAD * chunks * len(variables) + 8 * len(self.reps))

    def coords(self) -> dict:
        """Coordinate variables without the trial one: name -> (values, attrs).

        Dates are days since 1970-01-01 (CF convention), which xarray reads as datetime64.
        """
        def days(ds):
            return np.array([(d - EPOCH).days for d in ds], dtype=np.int64)

        time_attrs = {"units": TIME_UNITS, "calendar": "proleptic_gregorian"}
        out = {"period": (days(self.periods), {**time_attrs,
                                               "long_name": f"first day of the {self.scenario.report_by} "
                                                            "within the horizon"}),
               "segment": (list(self.segments), {}), "quantity": (list(self.quantities), {})}
        if self.reps:
            out["rep"] = (list(self.reps), {})
        if self.scenario.commission:
            out["quota_period"] = (days(self.quota_periods), {**time_attrs, "long_name": "first day of the "
                                   f"{self.scenario.commission.period} of each quota within the horizon"})
        if self.plan.counting:
            out["stage"] = (list(self.plan.stage_names), {})
        if self.plan.by_source:
            out["source"] = (list(SOURCES), {"long_name": "where won deals come from (v2 F12)"})
        return out

    def statics(self) -> dict:
        """Variables without a trial dimension: name -> (dims, values, attrs)."""
        if not self.reps:
            return {}
        return {"quota": (("rep",), self.quotas, {"units": self.unit, "long_name": "quota per commission period"})}

    def derive(self, revenue: np.ndarray, won: np.ndarray, bookings: np.ndarray, inputs: np.ndarray,
               *extra: np.ndarray) -> dict:
        """Every per-trial variable of a chunk, from the kernels' arrays (``extra``: those of
        :meth:`forecaster.engine.plan.Plan.kernel_buffers` with customers or stage values)."""
        out = {"revenue": revenue.sum(axis=2), "won_deals": won.sum(axis=2, dtype=np.int32),
               "revenue_by_segment": revenue, "won_deals_by_segment": won, "inputs": inputs}
        if self.reps:
            out["bookings"] = bookings
        base = bookings
        after_sale, stage = self.plan.split_extra(extra)
        if after_sale or self.plan.has_stage_values:
            out.update(self._after_sale(revenue, after_sale, stage if self.plan.has_stage_values else None))
            if after_sale and self.scenario.commission and self.scenario.commission.base == "total_bookings":
                base = bookings + after_sale[-1]  # renewals and repeat purchases of each rep's customers
                out["commission_bookings"] = base
            if after_sale:
                out["clv"] = self._clv(inputs)
        counts = self.plan.split_counts(extra)
        if counts is not None:  # v2 F1
            if self.scenario.outputs.stage_entries:
                out["stage_entries"] = counts[0]
            if self.scenario.outputs.losses:
                out["losses"] = counts[1]
        by_source = self.plan.split_sources(extra)
        if by_source is not None:
            out["revenue_by_source"], out["won_deals_by_source"] = by_source
        leads = self.plan.split_leads(extra)
        if leads is not None:  # v2 E.3: new leads on their arrival day, and event leads on their date (F2)
            event_counts = self.plan.split_event_counts(extra)
            if event_counts is not None:
                leads = leads + self.plan.event_leads(event_counts).astype(np.int32)
            out["leads_by_segment"], out["leads"] = leads, leads.sum(axis=2, dtype=np.int32)
            if self.plan.spend is not None:
                spend = self.plan.spend.of(leads, won, inputs, self.plan.periods.of_day)
                out["spend_by_segment"], out["spend"] = spend, spend.sum(axis=2)
        commission = self.scenario.commission
        if commission:
            earned = commission_per_quota_period(base, self.quotas, commission)
            out["commission"] = commission_by_period(earned, self.earn_period, len(self.periods))
            out["commission_by_quota_period"] = earned
            if extra_names(self.scenario):  # v2 D: spifs, clawbacks, draws, commission expense
                q = self.plan.quota_periods
                out.update(commission_extras(self.scenario, earned, base, *self.plan.split_commission(extra),
                                             earn_period=self.earn_period, n_periods=len(self.periods),
                                             quota_period_of_day=q.of_day, quota_last_day=q.last_day,
                                             period_of_day=self.plan.periods.of_day))
        return out


    def cycles(self, *buffers) -> np.ndarray:
        """v2 F1: the (segment index, days from arrival to win) rows of a chunk's won deals from
        new leads, pooled over its trials (``buffers``: those of :meth:`Plan.kernel_buffers`)."""
        from forecaster.results.cycle_days import pooled

        cycles = self.plan.split_cycles(tuple(buffers[4:]))
        return pooled(cycles) if cycles is not None else np.zeros((0, 2))

    def _clv(self, inputs: np.ndarray) -> np.ndarray:
        return _clv_of(self, inputs)

    def _after_sale(self, revenue: np.ndarray, after_sale: tuple, stage: np.ndarray | None) -> dict:
        """The after-sale variables (v2 A.3) and stage revenue (F11), by segment and summed
        over segments. Without customers: stage_revenue and total_bookings only."""
        if not after_sale:
            assert stage is not None
            by_segment = {"stage_revenue": stage, "total_bookings": revenue + stage}
        else:
            by = dict(zip(AFTER_SALE_FLOWS, after_sale[:-1]))
            recognised = by["recognised"].copy()
            without = self.plan.customers.kind == NONE  # deals of segments without a customer block: when won
            recognised[:, :, without] += revenue[:, :, without]
            total = revenue + by["renewal"] + by["repeat"] - by["cancellations"]
            if stage is not None:
                recognised += stage  # stage values are recognised on their day
                total += stage
            by_segment = {"recognised_revenue": recognised, "renewal_bookings": by["renewal"],
                          "repeat_revenue": by["repeat"], "cancellations": by["cancellations"],
                          "total_bookings": total, "new_customers": by["new"], "churned_customers": by["churned"],
                          "repeat_customers": by["repeat_customers"], "regular_customers": by["regular_customers"],
                          "active_customers": by["active"], "mrr": by["mrr"]}
            if stage is not None:
                by_segment["stage_revenue"] = stage
        out = {}
        for name, values in by_segment.items():
            if AFTER_SALE_VARIABLES[name][1] != "currency":
                values = np.rint(values).astype(np.int32)
            out[f"{name}_by_segment"] = values
            out[name] = values.sum(axis=2, dtype=values.dtype)
        return out


CLV_DRAWS = {"renew": "renew", "expansion": "expansion", "per_month": "repeat.per_month", "dropout": "dropout",
             "cancel_probability": "cancel.probability"}
"""The per-trial draws :func:`forecaster.results.clv.clv_per_trial` reads, by its keys: the
slots of ``inputs`` (``quantity`` names) that hold them."""


AFTER_SALE_VARIABLES = {
    # name: (flow or stock, unit, meaning); v2 A.3
    "recognised_revenue": ("flow", "currency", "revenue recognised in the period"),
    "renewal_bookings": ("flow", "currency", "value of the renewals booked in the period"),
    "repeat_revenue": ("flow", "currency", "value of the repeat purchases in the period"),
    "cancellations": ("flow", "currency", "refund x value of the cancellations that take effect in the period"),
    "total_bookings": ("flow", "currency", "revenue + renewal_bookings + repeat_revenue + stage_revenue - "
                                           "cancellations"),
    "stage_revenue": ("flow", "currency", "values booked when leads convert out of a stage with a value (F11)"),
    "new_customers": ("flow", "customers", "customers created in the period"),
    "churned_customers": ("flow", "customers", "customers that stop being active in the period"),
    "repeat_customers": ("flow", "customers", "customers reaching their 2nd purchase in the period"),
    "regular_customers": ("flow", "customers", "customers reaching their regular_from-th purchase in the period"),
    "active_customers": ("stock", "customers", "customers active at the end of the period's last day"),
    "mrr": ("stock", "currency", "monthly recurring revenue of the active subscribers at the period's end"),
}
"""The after-sale outputs (v2 A.3), each also ``<name>_by_segment``."""


def _clv_of(layout: Layout, inputs: np.ndarray) -> np.ndarray:
    """``clv(trial, segment)`` (v2 A.3) from the trials' ``inputs``: NaN for segments without a
    customer block."""
    from forecaster.results.clv import clv_per_trial  # scipy: only for runs with customers

    sc = layout.scenario
    slot = {name: k for k, name in enumerate(layout.quantities)}
    out = np.full((inputs.shape[0], len(sc.segments)), np.nan)
    for g, seg in enumerate(sc.segments.values()):
        if seg.customer is None:
            continue
        draws = {key: np.asarray(inputs[:, g, slot[q]], dtype=float) for key, q in CLV_DRAWS.items()}
        out[:, g] = clv_per_trial(seg.customer, seg.deal_value, sc.clv, draws, trials=inputs.shape[0])
    return out


class MemorySink:
    """Keeps every trial in memory; the kernels write straight into its arrays."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.kernel_arrays = layout.plan.kernel_buffers(layout.trials)

    def buffers(self, lo: int, n: int):
        return tuple(a[lo:lo + n] for a in self.kernel_arrays)

    def commit(self, lo: int, n: int, buffers) -> None:
        pass

    def arrays(self) -> dict:
        return self.layout.derive(*self.kernel_arrays)

    def cycles(self) -> np.ndarray:
        """v2 F1: every trial's (segment, cycle days) rows, pooled."""
        return self.layout.cycles(*self.kernel_arrays)

    def to_dataset(self):
        """The results as an xarray Dataset (imports xarray)."""
        import xarray as xr

        lay = self.layout
        arrays = self.arrays()
        coords: dict[str, Any] = {"trial": np.arange(lay.trials)}
        for name, (values, attrs) in lay.coords().items():
            if attrs.get("units") == TIME_UNITS:
                values = np.datetime64("1970-01-01", "ns") + values.astype("timedelta64[D]")
                attrs = {k: v for k, v in attrs.items() if k not in ("units", "calendar")}
            coords[name] = xr.Variable((name,), values, attrs)
        data = {v.name: xr.Variable(v.dims, arrays[v.name], v.attrs) for v in lay.variables()}
        data.update({k: xr.Variable(dims, values, attrs) for k, (dims, values, attrs) in lay.statics().items()})
        if lay.plan.cycling:  # v2 F1: the won deals' cycle times, pooled over trials (for summarize)
            rows = self.cycles()
            data["cycle_days"] = xr.Variable(("won_deal",), rows[:, 1], {
                "units": "days", "long_name": "time from arrival to win of the deals from new leads won inside the "
                                              "horizon, every trial's in turn"})
            data["cycle_days_segment"] = xr.Variable(("won_deal",), rows[:, 0].astype(np.int32),
                                                     {"long_name": "index of each won deal's segment"})
        return xr.Dataset(data, coords=coords, attrs=dict(lay.attrs))


class NetCDFSink:
    """Writes each chunk of trials into a NetCDF4 file as it is committed.

    The file is complete only after :meth:`close`; callers write it under a temporary name.
    The library writes through a :class:`forecaster.results.files.GuardedFile`: a failed write
    (full disk, file-size limit) raises :class:`OSError` from the next :meth:`commit` or from
    :meth:`close` instead of crashing the NetCDF library; the file is then to be abandoned
    (:meth:`abort`).

    ``precision="float32"`` stores the real-valued per-trial variables as float32;
    ``compress`` compresses every per-trial variable (zlib level 1, byte shuffle).
    """

    def __init__(self, layout: Layout, path: str | Path, chunk_trials: int, *, precision: str = "float64",
                 compress: bool = False):
        import h5netcdf
        import h5py


        self.layout = layout
        self.file = None
        self.vars = {}
        self.cycle_parts: list = []  # v2 F1: each chunk's pooled cycle times
        self.chunk_trials = max(1, min(chunk_trials, layout.trials))
        self.compress = compress
        self.guard = GuardedFile(path)
        try:
            self.file = h5netcdf.File(self.guard, "w")
            f = self.file
            f.dimensions = layout.sizes()
            f.attrs.update(layout.attrs)
            self.trial = f.create_variable("trial", ("trial",), "i8")  # written chunk by chunk, as the rest
            for name, (values, attrs) in layout.coords().items():
                if isinstance(values, list):
                    var = f.create_variable(name, (name,), dtype=h5py.string_dtype())
                    var[:] = np.array(values, dtype=object)
                else:
                    var = f.create_variable(name, (name,), data=values)
                var.attrs.update(attrs)
            for name, (dims, values, attrs) in layout.statics().items():
                f.create_variable(name, dims, data=values).attrs.update(attrs)
            sizes = layout.sizes()
            for v in layout.variables():
                shape = (self.chunk_trials,) + tuple(sizes[d] or 1 for d in v.dims[1:])
                chunks = shape if all(shape) else None
                extra = {"compression": "gzip", "compression_opts": 1, "shuffle": True} if compress and chunks else {}
                var = f.create_variable(v.name, v.dims, stored_dtype(v.dtype, precision), chunks=chunks, **extra)
                var.attrs.update(v.attrs)
                self.vars[v.name] = var
        except (OSError, RuntimeError) as exc:
            self.abort()
            raise self._failure(exc) from None
        except BaseException:
            self.abort()
            raise
        if self.guard.error is not None:
            self.abort()
            raise self.guard.error

    def _failure(self, exc: Exception) -> OSError:
        """The write error behind ``exc`` (the library's own error when none was recorded)."""
        if self.guard.error is not None:
            return self.guard.error
        return OSError(getattr(exc, "errno", None), (str(exc).splitlines() or [type(exc).__name__])[0])

    def buffers(self, lo: int, n: int):
        return self.layout.plan.kernel_buffers(n)

    def commit(self, lo: int, n: int, buffers) -> None:
        try:
            self.trial[lo:lo + n] = np.arange(lo, lo + n)
            for name, values in self.layout.derive(*buffers).items():
                if values.size:
                    self.vars[name][lo:lo + n] = values
            if self.layout.plan.cycling:
                self.cycle_parts.append(self.layout.cycles(*buffers))
        except (OSError, RuntimeError) as exc:
            raise self._failure(exc) from None
        self.guard.check()
        checkpoint()

    def close(self) -> None:
        """Close the file and flush it to the disk; raises the first write error, if any."""
        if self.file is not None:
            f, self.file = self.file, None
            try:
                f.close()  # never retried: closing twice after a failure crashes HDF5
            except (OSError, RuntimeError) as exc:
                failure = self._failure(exc)
                self.guard.close()
                raise failure from None
            self.guard.fsync()
        self.guard.close()
        self.guard.check()

    def abort(self) -> None:
        """Close without reporting errors: the file is being abandoned."""
        f, self.file = self.file, None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        self.guard.close()

    def cycles(self) -> np.ndarray:
        """v2 F1: every committed trial's (segment, cycle days) rows, pooled."""
        return np.concatenate(self.cycle_parts) if self.cycle_parts else np.zeros((0, 2))

    def columns(self) -> Columns:
        rows = self.chunk_trials if self.compress else Columns.ROWS  # one decompression per chunk
        return Columns({name: var for name, var in self.vars.items()}, self.layout.trials, rows=rows)

    def inputs(self):
        """The per-trial ``inputs`` for :func:`forecaster.results.summary.funnel_expectation`: the
        array, or beyond :data:`ROW_BLOCK_INPUTS` a :class:`RowBlocks` reader."""
        var = self.vars["inputs"]
        if self.layout.trials * int(np.prod(var.shape[1:], dtype=np.int64)) * 8 <= ROW_BLOCK_INPUTS:
            return var[:]
        return RowBlocks(var, self.layout.trials)


class RowBlocks:
    """A per-trial variable read a block of trials at a time: ``x[:, i, j]`` costs one column
    of memory, not the whole variable. Values are those of ``x[:]``, bit for bit."""

    ROWS = 1 << 16

    def __init__(self, source, trials: int, rows: int | None = None):
        self.source, self.trials, self.rows = source, trials, rows or self.ROWS
        self.shape = (trials, *source.shape[1:])
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        if not key or not (isinstance(key[0], slice) and key[0] == slice(None)):
            return np.asarray(self.source[key])
        parts = []
        for lo in range(0, self.trials, self.rows):
            parts.append(np.asarray(self.source[lo:min(self.trials, lo + self.rows)])[(slice(None), *key[1:])])
            checkpoint()
        return np.concatenate(parts)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.source[:], dtype=dtype)


class Columns:
    """Reads per-trial columns from arrays or NetCDF variables, a chunk of trials at a time.

    A column is selected by ``index``: one entry per non-trial dimension, an int to select
    or ``None`` to sum over it. :meth:`columns` reads each chunk of trials once for several
    columns, as many at a time as fit in ``budget`` bytes of float64.
    """

    ROWS = 1 << 16

    def __init__(self, arrays: dict, trials: int, rows: int = ROWS, budget: int = COLUMNS_BUDGET):
        self.arrays, self.trials, self.rows, self.budget = arrays, trials, rows, budget

    def __contains__(self, name: str) -> bool:
        return name in self.arrays

    def column(self, name: str, index: tuple) -> np.ndarray:
        """One column, shape (trials,)."""
        return self.columns(name, [index])[:, 0]

    def columns(self, name: str, indexes: list) -> np.ndarray:
        """Several columns of one variable, shape (trials, len(indexes))."""

        out = np.empty((self.trials, len(indexes)))
        source = self.arrays[name]
        for lo in range(0, self.trials, self.rows):
            hi = min(self.trials, lo + self.rows)
            block = np.asarray(source[lo:hi], dtype=float)
            checkpoint()  # an interrupt deferred while the file was read
            for j, index in enumerate(indexes):
                sel = block[(slice(None), *(slice(None) if i is None else i for i in index))]
                out[lo:hi, j] = sel.reshape(hi - lo, -1).sum(axis=1)
        return out

    def groups(self, indexes: list) -> list:
        """``indexes`` split so that each group's columns fit in the budget together."""
        per = max(1, self.budget // max(1, 8 * self.trials))
        return [indexes[i:i + per] for i in range(0, len(indexes), per)]


CHUNK_BYTES = 64 << 20
"""Memory for one chunk of trials when results are streamed to a file."""


def chunk_trials_for(layout: Layout) -> int:
    """Trials per streamed chunk: a whole number of blocks within :data:`CHUNK_BYTES`."""
    per_trial = sum(8 * int(np.prod([layout.sizes()[d] for d in v.dims[1:]])) for v in layout.variables())
    blocks_per_chunk = max(1, CHUNK_BYTES // max(1, 2 * per_trial * BLOCK_TRIALS))
    return int(blocks_per_chunk * BLOCK_TRIALS)

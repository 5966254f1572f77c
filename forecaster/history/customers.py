"""Customer histories: the after-sale models of a segment fitted from what its customers did.

Two logs are read, each a CSV file with a header row, read as a deal history is (a bounded,
regular UTF-8 file; problems reported together, each with its line; column names mapped
with ``NAME=SOURCE``, see :func:`column_map`):

**A transaction log**, one row per purchase (:func:`read_transactions`):

============  ==========================================================================
customer_id   who bought
date          the day of the purchase (ISO; a time after the date is ignored)
amount        optional: its value, a plain number >= 0 (a blank is no value)
segment       optional: the customer's segment
============  ==========================================================================

**A subscription log**, one row per term of a contract (:func:`read_subscriptions`):

============  ==========================================================================
customer_id   who subscribed
term_start    the term's first day
term_end      the first day after the term: the day its renewal is decided (the t_{k+1}
              of the format's A.2)
outcome       ``renewed``, ``churned`` or ``active`` (the decision is not made yet: the
              term is censored), or values mapped to them
value         optional: the term's value, a plain number >= 0
segment       optional: the customer's segment
============  ==========================================================================

Only what was known on the as-of date is used: purchases after it are ignored, a term that
starts after it is ignored, and a term whose ``term_end`` is after it is censored whatever
its outcome says (the decision was made later).

The models are those of the scenario format's section A (``../shared/scenario-format-v2.md``):

* **Repeat purchase, BG/NBD** (Fader, Hardie and Lee 2005, "Counting your customers the easy
  way"): while active a customer buys at a Poisson rate λ ~ Gamma(r, rate α), and after each
  repeat purchase becomes inactive with probability p ~ Beta(a, b). From a transaction log,
  each customer is summarised by (x, t_x, T) (:func:`summarize_purchases`): x the number of
  distinct purchase days after the first, t_x the time from the first purchase to the last,
  T the time from the first purchase to the as-of date. Times are in units of
  ``unit_days`` days: a customer month (:data:`CUSTOMER_MONTH_DAYS`) by default, a week for
  the published CDNOW analysis. :func:`fit_bgnbd` maximises the likelihood.
* **Renewal, shifted-beta-geometric** (Fader and Hardie 2007, "How to project customer
  retention"): at each term's end a customer renews with its own probability 1 − θ,
  θ ~ Beta(α, β). From a subscription log, each subscription contributes P(T = k + 1) when
  it churned after k renewals and S(k) when it is still running after k renewals
  (right-censored) (:func:`summarize_terms`, :func:`fit_sbg`).

The fits become the scenario's ``customer`` keys (:func:`repeat_block`,
:func:`subscription_block`; per_month in purchases per customer month, rate_cv = 1/√r,
dropout = a/(a + b), dropout_concentration = a + b; renew = β/(α + β), concentration =
α + β, term_months) and the installed base (:func:`installed_repeat_rows`,
:func:`installed_subscription_rows`, :func:`customers_csv`: the ``customers`` file of the
format's A.5).
"""
from __future__ import annotations

import calendar
import csv
import io
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from forecaster.errors import Problem, ScenarioError
from forecaster.history.readers import (
    MAX_REPORTED,
    _amount,
    _BadCell,
    _count,
    _date,
    _dropped,
    _header,
    _key,
    _name_problem,
    _names,
    _read_text,
    _records,
    _show,
    same_segment,
)

CUSTOMER_MONTH_DAYS = 365.25 / 12
"""A customer month [days]: the format's clock for rates per month (its section 0.5)."""
WEEK_DAYS = 7.0
"""A week [days]: the unit of the published BG/NBD analysis of CDNOW."""

TRANSACTION_FIELDS = ("customer_id", "date", "amount", "segment")
"""Our column names in a transaction log."""
SUBSCRIPTION_FIELDS = ("customer_id", "term_start", "term_end", "outcome", "value", "segment")
"""Our column names in a subscription log."""
TERM_OUTCOMES = ("renewed", "churned", "active")
"""A term's outcome: renewed at its end, churned at its end, or not decided yet (censored)."""
MAX_EMPIRICAL = 1000
"""The most values a fitted ``repeat.value`` lists (more purchases: that many quantiles)."""
LOG_BOUND = math.log(1e6)
"""The fits search shapes and concentrations (r, a + b, α + β) in [1e-6, 1e6] (log scale):
one that runs to the upper edge says the customers look alike (see :data:`HOMOGENEOUS`)."""


# ----------------------------------------------------------------------------------------
# Reading the logs


@dataclass(frozen=True)
class Purchase:
    """One row of a transaction log."""

    customer_id: str
    day: date
    amount: float | None       # in the log's currency; None when blank or the log has none
    segment: str | None = None  # None: the log names no segment


@dataclass(frozen=True)
class Term:
    """One row of a subscription log: a term covering the days [start, end)."""

    customer_id: str
    start: date
    end: date                  # the first day after the term: its renewal is decided then
    outcome: str               # renewed | churned | active
    value: float | None        # the term's value; None when blank or the log has none
    segment: str | None = None


def column_map(items: Iterable[str], fields: Sequence[str]) -> dict[str, str]:
    """``NAME=SOURCE`` items (our name, the file's column) as a dict; names not given are
    read from the file's column of the same name.

    Raises
    ------
    ValueError
        When an item is malformed, names no field of ``fields`` or maps one twice.
    """
    mapped: dict[str, str] = {}
    for item in items:
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key or not value:
            raise ValueError(f"expected NAME=SOURCE; got {item!r}")
        if key not in fields:
            raise ValueError(f"{item!r}: {key!r} is not one of our names; expected one of {', '.join(fields)}")
        if key in mapped and mapped[key] != value:
            raise ValueError(f"{key} is mapped twice (to {mapped[key]!r} and {value!r}); expected each name once")
        mapped[key] = value
    return mapped


def parse_term_outcomes(items: Iterable[str]) -> dict[str, str]:
    """``OUTCOME=VALUES`` items (``churned=Cancelled,Lapsed``) as a map from the file's value
    (matched case-insensitively, surrounding whitespace ignored) to renewed, churned or
    active; VALUES is read as one CSV row.

    Raises
    ------
    ValueError
        When an item is malformed or maps one value to two outcomes.
    """
    mapped: dict[str, str] = {}
    expected = ("expected OUTCOME=VALUES, OUTCOME one of renewed, churned, active and VALUES the file's values "
                "separated by commas (e.g. churned=\"Cancelled,Lapsed\")")
    for item in items:
        name, eq, values = item.partition("=")
        outcome = name.strip().lower()
        if not eq or outcome not in TERM_OUTCOMES:
            raise ValueError(f"{expected}; got {item!r}")
        keys = [_key(v) for v in next(csv.reader([values], skipinitialspace=True), []) if v.strip()]
        if not keys:
            raise ValueError(f"{expected}; got {item!r}, which names no values")
        for k in keys:
            if mapped.get(k, outcome) != outcome:
                raise ValueError(f"{k!r} is mapped to both {mapped[k]} and {outcome}; map each value once")
            mapped[k] = outcome
    return mapped


class _Log:
    """The rows of a log with their problems: each row's cells by our column names."""

    def __init__(self, path: Path, fields: Sequence[str], must: Sequence[str], columns: dict | None,
                 what: str, noun: str):
        self.shown = str(path)
        self.what, self.noun = what, noun
        self.col = {name: (columns or {}).get(name, name) for name in fields}
        expected = f"a CSV file ({what})"
        records = _records(_read_text(Path(path), self.shown, expected), self.shown)
        first = next(records, None)
        if first is None:
            raise ScenarioError(self.shown, [Problem("", f"is empty; expected a header row and {what}")])
        self.records = itertools.chain([first], records)
        header, index = _header(self.records, self.shown, list(self.col.values()))
        required = set(must) | set(columns or {})
        missing = [f"{k} (column {v!r})" for k, v in self.col.items() if k in required and v not in index]
        if missing:
            raise ScenarioError(self.shown, [Problem("", f"lacks {', '.join(missing)}; its columns are: "
                                                         f"{_names(header)}. Map a name to another column with "
                                                         "NAME=SOURCE (calibrate's --transaction-column or "
                                                         "--subscription-column)")])
        shared: dict[str, list[str]] = {}
        for k, v in self.col.items():
            if v in index:
                shared.setdefault(v, []).append(k)
        twice = {v: ks for v, ks in shared.items() if len(ks) > 1}
        if twice:
            raise ScenarioError(self.shown, [Problem("", "; ".join(f"{' and '.join(ks)} would all read column {v!r}"
                                                                   for v, ks in twice.items())
                                                     + "; expected each from its own column")])
        self.index = {name: index[v] for name, v in self.col.items() if v in index}
        self.problems: list[Problem] = []
        self.n_problems = 0
        self.dropped: dict[str, list[int]] = {}

    def rows(self):
        """(line, cell getter) for each row whose cells are not all blank."""
        for line, cells in self.records:
            def cell(name: str, cells=cells) -> str:
                i = self.index.get(name)
                return cells[i].strip() if i is not None and i < len(cells) else ""
            yield line, cell

    def problem(self, line: int | None, message: str) -> None:
        self.n_problems += 1
        if self.n_problems <= MAX_REPORTED:
            self.problems.append(Problem("", message, line=line))

    def bad_row(self, line: int, bad: list[tuple[str, str]], drop: bool) -> None:
        """A row that is no purchase or term: left out (``drop``) or refused."""
        if drop:
            self.dropped.setdefault(bad[0][1], []).append(line)
        else:
            for message, _ in bad:
                self.problem(line, message)

    def finish(self, n_rows: int, n_kept: int, warnings: list | None) -> None:
        """Raise the problems found, or note the rows left out."""
        if not n_rows:
            raise ScenarioError(self.shown, [Problem("", f"has a header but no rows ({self.what})")])
        if self.n_problems > MAX_REPORTED:
            self.problems.append(Problem("", f"and {self.n_problems - MAX_REPORTED} more problems like these",
                                         more=self.n_problems - MAX_REPORTED))
        if self.problems:
            raise ScenarioError(self.shown, self.problems)
        dropped = _dropped(self.dropped).replace("as a deal", f"as {self.noun}") if self.dropped else ""
        if not n_kept:
            raise ScenarioError(self.shown, [Problem("", f"has no row left: {dropped}")])
        if dropped and warnings is not None:
            warnings.append(f"{self.shown}: {dropped}")

    def segment(self, cell, bad: list) -> str | None:
        if "segment" not in self.index:
            return None
        seg = cell("segment")
        if not seg:
            bad.append((f"segment (column {self.col['segment']!r}) is blank", "a blank segment"))
            return None
        why = _name_problem(seg)
        if why:
            bad.append((f"segment (column {self.col['segment']!r}) {_show(seg)} {why}", "a segment that is no name"))
        return seg


def read_transactions(path: Path, columns: dict | None = None, *, warnings: list | None = None,
                      drop_bad_rows: bool = False) -> list[Purchase]:
    """Read a transaction log (see the module docstring) into purchases, in file order.

    ``columns``: our names (``customer_id``, ``date``, ``amount``, ``segment``) to the file's;
    a name mapped must exist. ``drop_bad_rows``: leave out the rows that cannot be read (a
    blank customer id, a bad date or amount), counted by reason in ``warnings``, instead of
    refusing the file.

    Raises
    ------
    ScenarioError
        With every problem found, each with its line.
    """
    log = _Log(path, TRANSACTION_FIELDS, ("customer_id", "date"), columns, "one row per purchase",
               "a purchase")
    out: list[Purchase] = []
    n_rows = 0
    for line, cell in log.rows():
        n_rows += 1
        bad: list[tuple[str, str]] = []
        cid = cell("customer_id")
        if not cid:
            bad.append((f"customer_id (column {log.col['customer_id']!r}) is blank", "a blank customer id"))
        day = None
        try:
            day = _date(cell("date"))
            if day is None:
                bad.append((f"date (column {log.col['date']!r}) is blank; expected the day of the purchase",
                            "a blank date"))
        except _BadCell as exc:
            bad.append((f"date (column {log.col['date']!r}): {exc}", exc.reason))
        amount = None
        try:
            amount = _amount(cell("amount"))
        except _BadCell as exc:
            bad.append((f"amount (column {log.col['amount']!r}): {exc}", exc.reason))
        seg = log.segment(cell, bad)
        if bad or day is None:
            log.bad_row(line, bad, drop_bad_rows)
            continue
        out.append(Purchase(cid, day, amount, seg))
    log.finish(n_rows, len(out), warnings)
    return out


def read_subscriptions(path: Path, columns: dict | None = None, outcomes: dict | None = None, *,
                       warnings: list | None = None, drop_bad_rows: bool = False) -> list[Term]:
    """Read a subscription log (see the module docstring) into terms, in file order.

    ``columns``: our names (``customer_id``, ``term_start``, ``term_end``, ``outcome``,
    ``value``, ``segment``) to the file's; ``outcomes``: the file's outcome values to
    renewed, churned or active (:func:`parse_term_outcomes`), over the identity map.
    ``drop_bad_rows``: as in :func:`read_transactions` (an outcome mapped to nothing is
    always refused: it says the map is wrong, not a row).

    Raises
    ------
    ScenarioError
        With every problem found, each with its line: blank ids, bad dates or values, a term
        that ends on or before it starts, outcomes mapped to nothing, two terms of a customer
        starting on the same day.
    """
    log = _Log(path, SUBSCRIPTION_FIELDS, ("customer_id", "term_start", "term_end", "outcome"), columns,
               "one row per term", "a term")
    outcome_map = {o: o for o in TERM_OUTCOMES}
    outcome_map.update({_key(k): v for k, v in (outcomes or {}).items()})
    out: list[Term] = []
    unmapped: Counter[str] = Counter()
    first_line: dict[str, int] = {}
    seen: dict[tuple[str, date], int] = {}
    n_rows = 0
    for line, cell in log.rows():
        n_rows += 1
        bad: list[tuple[str, str]] = []
        cid = cell("customer_id")
        if not cid:
            bad.append((f"customer_id (column {log.col['customer_id']!r}) is blank", "a blank customer id"))
        days: dict[str, date | None] = {}
        for name in ("term_start", "term_end"):
            try:
                days[name] = _date(cell(name))
                if days[name] is None:
                    bad.append((f"{name} (column {log.col[name]!r}) is blank", "a blank date"))
            except _BadCell as exc:
                bad.append((f"{name} (column {log.col[name]!r}): {exc}", exc.reason))
        start, end = days.get("term_start"), days.get("term_end")
        if start is not None and end is not None and end <= start:
            bad.append((f"term_end {end} (column {log.col['term_end']!r}) is not after term_start {start}; "
                        "expected the first day after the term", "a term that ends before it starts"))
        value = None
        try:
            value = _amount(cell("value"))
        except _BadCell as exc:
            bad.append((f"value (column {log.col['value']!r}): {exc}", exc.reason))
        raw = cell("outcome")
        outcome = outcome_map.get(_key(raw))
        if outcome is None:
            unmapped[raw] += 1
            first_line.setdefault(raw, line)
        seg = log.segment(cell, bad)
        if bad or start is None or end is None:
            log.bad_row(line, bad, drop_bad_rows)
            continue
        if outcome is None:
            continue
        if (cid, start) in seen:
            log.problem(line, f"customer {_show(cid)} has another term starting on {start} (line "
                              f"{seen[(cid, start)]}); expected one row per term")
            continue
        seen[(cid, start)] = line
        out.append(Term(cid, start, end, outcome, value, seg))
    if unmapped:
        shown = ", ".join(f"{_show(v) if v else '(blank)'}: {n} row{'s' * (n != 1)} (first on line {first_line[v]})"
                          for v, n in unmapped.most_common(10))
        log.problems.insert(0, Problem("", f"column {log.col['outcome']!r} (the outcome) holds values mapped to no "
                                           f"outcome; each term must be renewed, churned or active: {shown}. Map "
                                           "them with OUTCOME=VALUES, e.g. churned=\"Cancelled,Lapsed\""))
    log.finish(n_rows, len(out), warnings)
    return out


def by_segment(rows: Iterable, default: str | None = None) -> dict[str | None, list]:
    """Rows (purchases or terms) grouped by segment, in order of first appearance; rows
    without a segment go to ``default``."""
    out: dict[str | None, list] = {}
    for row in rows:
        out.setdefault(row.segment if row.segment is not None else default, []).append(row)
    return out


# ----------------------------------------------------------------------------------------
# Repeat purchase: the customer-level summary and the BG/NBD fit


@dataclass
class RepeatHistory:
    """Each customer of a transaction log as known on ``as_of`` (arrays of shape (n,)).

    ``x``: repeat purchases, the distinct purchase days after the first; ``t_x``: time from
    the first purchase to the last (0 when x = 0); ``T``: time from the first purchase to
    ``as_of``. Times are in units of ``unit_days`` days. ``first``/``last``: the dates of
    the first and the last purchase. ``repeat_values``: the value of every repeat purchase
    day (the day's amounts summed), of the customers whose purchases all have amounts.
    """

    customer_ids: list[str]
    first: list[date]
    last: list[date]
    x: np.ndarray
    t_x: np.ndarray
    T: np.ndarray
    as_of: date
    unit_days: float
    repeat_values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ignored_after: int = 0     # purchases after as_of, ignored
    same_day: int = 0          # purchases on a day the customer had already bought on, merged

    @property
    def n(self) -> int:
        return len(self.customer_ids)


def summarize_purchases(purchases: Iterable[Purchase], as_of: date, *,
                        unit_days: float = CUSTOMER_MONTH_DAYS) -> RepeatHistory:
    """The (x, t_x, T) summary of each customer whose first purchase is on or before
    ``as_of`` (the standard definitions of the BG/NBD literature): purchases after
    ``as_of`` are ignored, purchases on one day are one purchase (their amounts summed),
    x counts the purchase days after the first, t_x = (last − first) / unit_days and
    T = (as_of − first) / unit_days. Customers in order of their first purchase (ties by id).
    """
    days: dict[str, dict[date, float | None]] = {}
    after = merged = 0
    for p in purchases:
        if p.day > as_of:
            after += 1
            continue
        mine = days.setdefault(p.customer_id, {})
        if p.day in mine:
            merged += 1
            before = mine[p.day]
            mine[p.day] = None if before is None or p.amount is None else before + p.amount
        else:
            mine[p.day] = p.amount
    order = sorted(days, key=lambda c: (min(days[c]), c))
    first = [min(days[c]) for c in order]
    last = [max(days[c]) for c in order]
    x = np.array([len(days[c]) - 1 for c in order], dtype=np.int64)
    t_x = np.array([(b - a).days for a, b in zip(first, last)], dtype=float) / unit_days
    T = np.array([(as_of - a).days for a in first], dtype=float) / unit_days
    values = []
    for c, f in zip(order, first):
        amounts = [v for d, v in days[c].items() if d != f]
        if amounts and all(v is not None for v in amounts):
            values.extend(amounts)
    return RepeatHistory(order, first, last, x, t_x, T, as_of, unit_days,
                         np.array(values, dtype=float), after, merged)


def _collapse(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """The distinct rows of ``columns`` and how many times each occurs (a likelihood over
    thousands of customers has a few hundred distinct terms)."""
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in columns])
    rows, counts = np.unique(stacked, axis=0, return_counts=True)
    return [rows[:, i] for i in range(rows.shape[1])], counts.astype(float)


def bgnbd_log_likelihood(r: float, alpha: float, a: float, b: float, x, t_x, T, weights=None) -> float:
    """The BG/NBD log-likelihood of customers (x, t_x, T) (Fader, Hardie and Lee 2005, eq. 6):

    L = B(a, b + x)/B(a, b) · Γ(r + x) α^r / (Γ(r) (α + T)^(r + x))
        + [x > 0] B(a + 1, b + x − 1)/B(a, b) · Γ(r + x) α^r / (Γ(r) (α + t_x)^(r + x)),

    summed in logs over customers (each weighted by ``weights``, default 1). α, t_x and T
    in the same time unit.
    """
    x = np.asarray(x, dtype=float)
    t_x, T = np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    common = gammaln(r + x) - gammaln(r) + r * math.log(alpha) - betaln(a, b)
    alive = betaln(a, b + x) - (r + x) * np.log(alpha + T)
    pos = x > 0
    xs = np.where(pos, x, 1.0)
    gone = np.where(pos, betaln(a + 1, b + xs - 1) - (r + xs) * np.log(alpha + np.where(pos, t_x, 0.0)), -np.inf)
    return float(np.sum(w * (common + np.logaddexp(alive, gone))))


SAME_FIT = 0.5
"""Log-likelihood units within which two fits are the same fit for :func:`_maximise`'s
convergence (a likelihood-ratio test would tell them apart at 2 x 0.5 = 1 on one degree of
freedom: p = 0.32, nothing)."""


def _maximise(ll: Callable[[np.ndarray], float], starts: Sequence[Sequence[float]],
              bounds: Sequence[tuple[float, float]]) -> tuple[np.ndarray, float, bool]:
    """The working parameters maximising ``ll`` from several ``starts`` (L-BFGS-B within
    ``bounds``), polished by Nelder-Mead: (best, its log-likelihood, converged).

    Converged: the polish converged, or some start's L-BFGS-B converged at a log-likelihood
    within :data:`SAME_FIT` of the best point's. On a likelihood's flat ridge (customers
    alike: a + b running off to infinity) the best start can end in a failed line search a
    hair above a start that converged (0.05 higher on a test's 4,000 customers), and the
    polish wander along the ridge until its iterations run out (scipy 1.17's L-BFGS-B
    reports that line search as ``ABNORMAL``): the fit is as good as a converged one, and
    is not reported as a failure; a converged start far below the best is no evidence. On
    that ridge every start's line search may fail (a fresh install in December 2026, numpy
    2.4.6 and scipy 1.17.1: the three starts of the test's 4,000 customers alike ended
    within 0.11 of each other, all ``ABNORMAL``): two starts ending within :data:`SAME_FIT`
    of the best point agree where the maximum is, which is convergence as well."""
    lo, hi = np.array([b[0] for b in bounds]), np.array([b[1] for b in bounds])

    def negative(phi):
        v = ll(np.clip(phi, lo, hi))
        return -v if math.isfinite(v) else 1e300

    runs = [minimize(negative, np.clip(np.asarray(start, dtype=float), lo, hi), method="L-BFGS-B", bounds=bounds,
                     options={"ftol": 1e-15, "gtol": 1e-9, "maxiter": 5000}) for start in starts]
    best = min(runs, key=lambda r: r.fun)  # the first of equals, as the loop before kept
    polish = minimize(negative, best.x, method="Nelder-Mead",
                      options={"xatol": 1e-8, "fatol": 1e-10, "maxiter": 400 * len(bounds)})
    phi = np.clip(polish.x, lo, hi) if polish.fun <= best.fun else best.x
    value = -negative(phi)
    near = [r for r in runs if -r.fun >= value - SAME_FIT]
    converged = any(r.success for r in near) or len(near) >= 2
    return phi, value, bool(converged or polish.success)


def _hessian(f: Callable[[np.ndarray], float], theta: np.ndarray, h: float = 1e-3) -> np.ndarray:
    """The Hessian of ``f`` at ``theta`` by central differences (step ``h``)."""
    k = theta.size
    H = np.empty((k, k))
    for i in range(k):
        for j in range(i, k):
            ei, ej = np.eye(k)[i] * h, np.eye(k)[j] * h
            H[i, j] = H[j, i] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej)
                                 + f(theta - ei - ej)) / (4 * h * h)
    return H


def _covariance(ll: Callable[[np.ndarray], float], phi: np.ndarray, free: np.ndarray,
                jacobian: np.ndarray) -> np.ndarray | None:
    """The covariance of the log-parameters from the observed information: the inverse of
    minus the log-likelihood's Hessian in the working parameters ``phi``, over the ``free``
    ones (the others are held fixed: customers alike in that respect), carried to the
    log-parameters by ``jacobian`` (d log-parameter / d phi). None when the Hessian is not
    negative definite (a flat likelihood)."""
    k = phi.size
    idx = np.flatnonzero(free)
    cov = np.zeros((k, k))
    if idx.size:
        def sub(t):
            full = phi.copy()
            full[idx] = t
            return ll(full)

        H = -_hessian(sub, phi[idx])
        try:
            np.linalg.cholesky(H)
        except np.linalg.LinAlgError:
            return None
        cov[np.ix_(idx, idx)] = np.linalg.inv(H)
    return jacobian @ cov @ jacobian.T


HOMOGENEOUS = 1e4
"""A shape r or a concentration (a + b, α + β) at least this large is read as customers
alike in that respect (a rate's cv below 1%): the fit holds it fixed for the standard errors
and the scenario leaves the heterogeneity out."""
RATIO_BOUND = 30.0
"""The fits search a log-rate and a logit within ±30."""


def _expit(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


@dataclass(frozen=True)
class BGNBDFit:
    """A BG/NBD maximum-likelihood fit: λ ~ Gamma(shape r, rate α) purchases per time unit
    while active, p ~ Beta(a, b) the dropout after each repeat purchase.

    ``unit_days``: the time unit [days] of α (and of the data it was fitted on);
    ``log_cov``: covariance of (ln r, ln α, ln a, ln b) from the observed information (None
    when the likelihood is flat there); ``homogeneous``: the parameters so large
    (:data:`HOMOGENEOUS`) that the customers look alike in that respect (r, α: one purchase
    rate; a, b: one dropout probability), held fixed for the covariance (so a standard error
    of 0 on them, while the mean rate and the mean dropout keep theirs).
    """

    r: float
    alpha: float
    a: float
    b: float
    log_likelihood: float
    n_customers: int
    unit_days: float
    log_cov: np.ndarray | None
    homogeneous: tuple[str, ...] = ()
    converged: bool = True

    @property
    def params(self) -> dict[str, float]:
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @property
    def se(self) -> dict[str, float] | None:
        """Standard errors of r, α, a, b (delta method from the log scale); None without
        a covariance. A parameter in ``homogeneous`` (held fixed) has 0."""
        if self.log_cov is None:
            return None
        return {n: v * math.sqrt(max(self.log_cov[i, i], 0.0)) for i, (n, v) in enumerate(self.params.items())}

    def _log_se(self, coef: Sequence[float]) -> float | None:
        """The standard error of a linear combination of the log-parameters."""
        if self.log_cov is None:
            return None
        c = np.asarray(coef, dtype=float)
        return math.sqrt(max(float(c @ self.log_cov @ c), 0.0))

    @property
    def per_month(self) -> float:
        """The mean purchase rate while active, E[λ] = r/α, in purchases per customer month."""
        return self.r / self.alpha * CUSTOMER_MONTH_DAYS / self.unit_days

    @property
    def per_month_se(self) -> float | None:
        s = self._log_se((1, -1, 0, 0))
        return None if s is None else self.per_month * s

    @property
    def rate_cv(self) -> float:
        """The coefficient of variation of customers' purchase rates, 1/√r."""
        return 1 / math.sqrt(self.r)

    @property
    def dropout(self) -> float:
        """The mean dropout probability after a repeat purchase, a/(a + b)."""
        return self.a / (self.a + self.b)

    @property
    def dropout_se(self) -> float | None:
        s = self._log_se((0, 0, 1, -1))  # logit(dropout) = ln a − ln b
        return None if s is None else self.dropout * (1 - self.dropout) * s

    @property
    def dropout_concentration(self) -> float:
        """a + b: how alike customers' dropout probabilities are (large: alike)."""
        return self.a + self.b

    def expected_repeat(self, t) -> np.ndarray:
        """E[X(t)], the expected repeat purchases of one customer in the time t (in units of
        ``unit_days``) after its first purchase (Fader, Hardie and Lee 2005, eq. 7):
        (a + b − 1)/(a − 1) · [1 − (α/(α + t))^r ₂F₁(r, b; a + b − 1; t/(α + t))]; where that
        form cannot be evaluated (a near 1, a + b ≤ 1), the same expectation by quadrature,
        E_p[(1 − (α/(α + p t))^r) / p]."""
        r, al, a, b = self.r, self.alpha, self.a, self.b
        t = np.atleast_1d(np.asarray(t, dtype=float))
        with np.errstate(all="ignore"):
            out = np.float64(a + b - 1) / np.float64(a - 1) * (1 - (al / (al + t)) ** r * hyp2f1(r, b, a + b - 1, t / (al + t)))
        bad = ~np.isfinite(out) | (abs(a - 1) < 1e-6) | (a + b <= 1)
        if bad.any():  # the closed form divides by a − 1
            from scipy import integrate
            from scipy.stats import beta as beta_law

            for i in np.flatnonzero(bad):
                ti = t[i]
                out[i] = integrate.quad(lambda p, ti=ti: -np.expm1(-r * np.log1p(p * ti / al))
                                        / p * beta_law.pdf(p, a, b), 0, 1, limit=200)[0]
        out[t <= 0] = 0.0
        return out

    def p_alive(self, x, t_x, T) -> np.ndarray:
        """P(active at T | x, t_x, T) = 1 / (1 + [x > 0] a/(b + x − 1) ((α + T)/(α + t_x))^(r + x))
        (Fader, Hardie and Lee 2005, eq. 11)."""
        x = np.asarray(x, dtype=float)
        t_x, T = np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
        xs = np.maximum(x, 1.0)
        with np.errstate(over="ignore"):
            odds = self.a / (self.b + xs - 1) * np.exp((self.r + xs) * (np.log(self.alpha + T)
                                                                         - np.log(self.alpha + t_x)))
        return np.where(x > 0, 1 / (1 + odds), 1.0)

    def summary(self) -> str:
        se = self.se or {}
        shown = ", ".join(f"{n} = {v:.4g}" + (f" ± {se[n]:.2g}" if n in se and n not in self.homogeneous else "")
                          for n, v in self.params.items())
        unit = "weeks" if self.unit_days == WEEK_DAYS else ("customer months" if self.unit_days == CUSTOMER_MONTH_DAYS
                                                             else f"units of {self.unit_days:g} days")
        edge = f"; customers alike in {', '.join(self.homogeneous)}" if self.homogeneous else ""
        return f"BG/NBD over {self.n_customers} customers ({unit}): {shown}; log-likelihood {self.log_likelihood:.2f}{edge}"


def fit_bgnbd(x, t_x, T, *, unit_days: float = CUSTOMER_MONTH_DAYS, weights=None,
              starts: Sequence[Sequence[float]] | None = None) -> BGNBDFit:
    """The BG/NBD maximum-likelihood estimates from customers' (x, t_x, T) (times in units
    of ``unit_days`` days), by L-BFGS-B on the log-parameters from several starts (or
    ``starts``: (r, α, a, b) tuples), with standard errors from the observed information.

    Raises
    ------
    ValueError
        When there is no customer, or the data are not (x ≥ 0 whole, 0 ≤ t_x ≤ T).
    """
    x = np.asarray(x, dtype=float)
    t_x, T = np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
    w = np.ones_like(x) if weights is None else np.asarray(weights, dtype=float)
    if x.size == 0:
        raise ValueError("no customer to fit the repeat-purchase model on")
    if (np.any(x < 0) or np.any(x != np.round(x)) or np.any(t_x < 0) or np.any(t_x > T + 1e-9)
            or np.any((x == 0) & (t_x > 0))):
        raise ValueError("expected whole x >= 0 and 0 <= t_x <= T (t_x = 0 when x = 0)")
    if weights is None:
        (xu, tu, Tu), wu = _collapse(x, t_x, T)
    else:
        (xu, tu, Tu, ww), counts = _collapse(x, t_x, T, w)
        wu = ww * counts

    # working parameters: ln(r/α) (the log mean rate), ln r, logit(a/(a + b)), ln(a + b): the
    # likelihood's ridges toward alike customers (r, a + b → ∞) run along single axes
    def unpack(phi) -> tuple[float, float, float, float]:
        m = _expit(phi[2])
        r, kappa = math.exp(phi[1]), math.exp(phi[3])
        return r, r / math.exp(phi[0]), kappa * m, kappa * (1 - m)

    def ll(phi):
        return bgnbd_log_likelihood(*unpack(phi), xu, tu, Tu, wu)

    bounds = [(-RATIO_BOUND, RATIO_BOUND), (-LOG_BOUND, LOG_BOUND), (-RATIO_BOUND, RATIO_BOUND), (-LOG_BOUND, LOG_BOUND)]
    if starts is None:
        rate = max(float(np.sum(w * x) / max(np.sum(w * T), 1e-12)), 1e-6)  # repeat purchases per unit time
        starts = [(r0, r0 / rate, a0, b0) for r0, a0, b0 in ((1.0, 1.0, 1.0), (0.3, 0.5, 3.0), (3.0, 2.0, 10.0))]
    phi, value, ok = _maximise(ll, [(math.log(r0 / a0), math.log(r0), math.log(aa / bb), math.log(aa + bb))
                                    for r0, a0, aa, bb in starts], bounds)
    r, al, a, b = unpack(phi)
    m = a / (a + b)
    jac = np.array([[0, 1, 0, 0], [-1, 1, 0, 0], [0, 0, 1 - m, 1], [0, 0, -m, 1]], dtype=float)
    alike_rate, alike_dropout = r >= HOMOGENEOUS, a + b >= HOMOGENEOUS
    cov = _covariance(ll, phi, np.array([True, not alike_rate, True, not alike_dropout]), jac)
    homogeneous = ("r", "alpha") * alike_rate + ("a", "b") * alike_dropout
    return BGNBDFit(r, al, a, b, value, int(round(w.sum())), unit_days, cov, homogeneous, ok)


def fit_repeat(history: RepeatHistory) -> BGNBDFit:
    """:func:`fit_bgnbd` on a :class:`RepeatHistory`, in its time unit."""
    return fit_bgnbd(history.x, history.t_x, history.T, unit_days=history.unit_days)


@dataclass(frozen=True)
class TrackingRow:
    """Cumulative repeat purchases to the end of a period: counted and expected by a fit."""

    period: int          # 1, 2, ... from the origin
    end: date            # the period's last day
    actual: int
    expected: float


def cumulative_tracking(fit: BGNBDFit, purchases: Iterable[Purchase], as_of: date, origin: date,
                        periods: Iterable[int], period_days: int = 7) -> list[TrackingRow]:
    """The fit's tracking of cumulative repeat purchases (Fader, Hardie and Lee 2005, fig. 2):
    for each period n of ``periods`` (period 1 is the ``period_days`` days from ``origin``),
    the repeat purchases (distinct purchase days after each customer's first) made by the
    end of its last day, counted, against Σ E[X(t_i)] with t_i the time from customer i's
    first purchase to that day, as T is measured. Only customers whose first purchase is on
    or before ``as_of`` (those the fit saw) count; purchases after ``as_of`` count here.
    """
    days: dict[str, set[date]] = {}
    for p in purchases:
        days.setdefault(p.customer_id, set()).add(p.day)
    firsts = {c: min(d) for c, d in days.items() if min(d) <= as_of}
    repeat_days = np.sort(np.array([(d - origin).days for c, f in firsts.items() for d in days[c] if d != f]))
    first_days = np.array([(f - origin).days for f in firsts.values()], dtype=float)
    out = []
    for n in periods:
        last = n * period_days - 1
        actual = int(np.searchsorted(repeat_days, last, side="right"))
        t = np.maximum(last - first_days, 0.0) / fit.unit_days
        ts, counts = np.unique(t, return_counts=True)
        expected = float(np.sum(fit.expected_repeat(ts) * counts))
        out.append(TrackingRow(n, origin + timedelta(days=last), actual, expected))
    return out


# ----------------------------------------------------------------------------------------
# Renewal: the subscriptions as known on a date and the shifted-beta-geometric fit


def add_months(d: date, n: int) -> date:
    """The day with d's day of month n calendar months after d (before, n < 0), or the last
    day of that month when it is shorter (the format's section 0.5)."""
    y, m = divmod(d.month - 1 + n, 12)
    y, m = d.year + y, m + 1
    return date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


@dataclass
class Subscription:
    """A customer's run of consecutive terms (a spell), as known on the as-of date.

    ``renewals``: renewals survived; ``state``: ``churned`` (not renewed at the end of its
    last term), ``active`` (its last known term runs past the as-of date: censored) or
    ``lapsed`` (censored without a current term in the log: its last term ended on or
    before the as-of date without a recorded churn); ``term_start``/``term_end``/``value``:
    its last known term's.
    """

    customer_id: str
    segment: str | None
    first_start: date
    term_start: date
    term_end: date
    value: float | None
    renewals: int = 0
    state: str = "active"


@dataclass
class SubscriptionHistory:
    """The subscriptions of a log as known on ``as_of``, with what was inferred from them.

    ``term_months``: the most common term length in whole months (each term's days / a
    customer month, rounded), ``term_share`` the share of terms of that length;
    ``expansion``: the value's relative growth at renewal, Σ v_(k+1) / Σ v_k − 1 over the
    ``expansion_pairs`` renewals whose two terms have values (None without any).
    """

    subscriptions: list[Subscription]
    as_of: date
    term_months: int
    term_share: float
    expansion: float | None
    expansion_pairs: int
    notes: list[str] = field(default_factory=list)

    @property
    def renewals(self) -> np.ndarray:
        return np.array([s.renewals for s in self.subscriptions], dtype=np.int64)

    @property
    def churned(self) -> np.ndarray:
        return np.array([s.state == "churned" for s in self.subscriptions], dtype=bool)


GAP_DAYS = 7
"""A term that starts more than this many days before or after the end of the customer's
previous term is counted in a note (the log's terms are taken as consecutive all the same)."""


def summarize_terms(terms: Iterable[Term], as_of: date) -> SubscriptionHistory:
    """The subscriptions of a subscription log as known on ``as_of``.

    A customer's terms (those starting on or before ``as_of``) are taken in order of their
    start; a term after a churned one starts a new subscription (a win-back). A term ending
    on or before ``as_of`` was renewed when the log says so or when a later term follows;
    it churned when the log says churned; a term ending after ``as_of`` is censored, whatever
    its outcome (the decision was made later).

    Raises
    ------
    ValueError
        When no term starts on or before ``as_of``, or a customer's terms overlap.
    """
    by_customer: dict[str, list[Term]] = {}
    later = 0
    for t in terms:
        if t.start > as_of:
            later += 1
            continue
        by_customer.setdefault(t.customer_id, []).append(t)
    if not by_customer:
        raise ValueError(f"no term started on or before {as_of}")
    subs: list[Subscription] = []
    months: Counter[int] = Counter()
    grown = base = 0.0
    pairs = gaps = winbacks = stale = renewed_only = 0
    overlaps: list[str] = []
    for cid in sorted(by_customer):
        ts = sorted(by_customer[cid], key=lambda t: t.start)
        cur: Subscription | None = None
        prev: Term | None = None
        for t in ts:
            months[max(round((t.end - t.start).days / CUSTOMER_MONTH_DAYS), 0)] += 1
            if prev is not None and t.start < prev.end - timedelta(days=GAP_DAYS):
                overlaps.append(f"{cid} ({prev.start} to {prev.end} and {t.start} to {t.end})")
                break
            if cur is None or prev is None or cur.state == "churned":
                winbacks += cur is not None
                cur = Subscription(cid, t.segment, t.start, t.start, t.end, t.value)
                subs.append(cur)
            else:  # the previous term was renewed: this term follows it
                if prev.end <= as_of and prev.outcome == "active":
                    cur.renewals += 1  # recorded 'active', but a later term shows that it renewed
                if abs((t.start - prev.end).days) > GAP_DAYS:
                    gaps += 1
                if prev.value and t.value is not None:
                    grown, base, pairs = grown + t.value, base + prev.value, pairs + 1
                cur.term_start, cur.term_end, cur.value = t.start, t.end, t.value
                cur.segment = t.segment if t.segment is not None else cur.segment
            if t.end > as_of:
                cur.state = "active"  # censored: its renewal is decided after as_of
            elif t.outcome == "churned":
                cur.state = "churned"
            else:  # renewed (or recorded 'active') on or before as_of: pending a following term
                cur.renewals += t.outcome == "renewed"
                cur.state = "lapsed"
            prev = t
        if cur is not None and cur.state == "lapsed" and prev is not None:
            stale += prev.outcome == "active"
            renewed_only += prev.outcome == "renewed"
    if overlaps:
        raise ValueError(f"{_count(overlaps, 'customer')} with overlapping terms, e.g. {overlaps[0]}; expected "
                         "consecutive terms, one row each")
    n_terms = sum(months.values())
    term_months, most = max(months.items(), key=lambda kv: (kv[1], -kv[0]))
    notes = [f"{len(subs)} subscriptions of {len(by_customer)} customers as known on {as_of}: "
             f"{sum(s.state == 'churned' for s in subs)} churned, {sum(s.state == 'active' for s in subs)} active, "
             f"{sum(s.state == 'lapsed' for s in subs)} lapsed (no current term in the log: censored); "
             f"{sum(s.renewals for s in subs)} renewals survived"]
    if term_months < 1:
        raise ValueError(f"most terms are shorter than half a month ({most} of {n_terms}); expected terms of whole "
                         "months")
    if most < n_terms:
        notes.append(f"term_months {term_months}: {most} of {n_terms} terms last about {term_months} months; the "
                     "others: " + ", ".join(f"{n} of {m}" for m, n in sorted(months.items()) if m != term_months))
    if later:
        notes.append(f"{_count(range(later), 'term')} starting after {as_of} ignored")
    if winbacks:
        notes.append(f"{_count(range(winbacks), 'subscription')} started again after a churn (counted as new "
                     "subscriptions)")
    if gaps:
        notes.append(f"{_count(range(gaps), 'renewal')} with a gap of more than {GAP_DAYS} days between terms")
    if renewed_only:
        notes.append(f"{_count(range(renewed_only), 'subscription')} renewed on or before {as_of} without a "
                     "following term in the log: censored after that renewal, not in the installed base")
    if stale:
        notes.append(f"{_count(range(stale), 'term')} ended on or before {as_of} with outcome 'active' and no term "
                     "after: censored there")
    expansion = grown / base - 1 if pairs and base > 0 else None
    return SubscriptionHistory(subs, as_of, int(term_months), most / n_terms, expansion, pairs, notes)


def sbg_log_likelihood(alpha: float, beta: float, renewals, churned, weights=None) -> float:
    """The shifted-beta-geometric log-likelihood (Fader and Hardie 2007): a subscription that
    churned after k renewals contributes P(T = k + 1) = B(α + 1, β + k)/B(α, β); one still
    running after k renewals (censored) S(k) = B(α, β + k)/B(α, β). θ ~ Beta(α, β) is the
    churn probability at each renewal."""
    k = np.asarray(renewals, dtype=float)
    c = np.asarray(churned, dtype=bool)
    w = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    terms = np.where(c, betaln(alpha + 1, beta + k), betaln(alpha, beta + k)) - betaln(alpha, beta)
    return float(np.sum(w * terms))


@dataclass(frozen=True)
class SBGFit:
    """A shifted-beta-geometric fit: each customer churns at each renewal with its own
    probability θ ~ Beta(α, β).

    ``log_cov``: covariance of (ln α, ln β) from the observed information; ``homogeneous``: as
    in :class:`BGNBDFit` (α, β → ∞: every customer renews with the same probability).
    """

    alpha: float
    beta: float
    log_likelihood: float
    n: int                  # subscriptions
    churned: int            # of which churned (the others censored)
    log_cov: np.ndarray | None
    homogeneous: tuple[str, ...] = ()
    converged: bool = True

    @property
    def se(self) -> dict[str, float] | None:
        if self.log_cov is None:
            return None
        return {"alpha": self.alpha * math.sqrt(max(self.log_cov[0, 0], 0.0)),
                "beta": self.beta * math.sqrt(max(self.log_cov[1, 1], 0.0))}

    @property
    def renew(self) -> float:
        """The mean renewal probability, β/(α + β)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def renew_se(self) -> float | None:
        if self.log_cov is None:
            return None
        c = np.array([-1.0, 1.0])  # logit(renew) = ln β − ln α
        return self.renew * (1 - self.renew) * math.sqrt(max(float(c @ self.log_cov @ c), 0.0))

    @property
    def concentration(self) -> float:
        """α + β: how alike customers' renewal probabilities are (large: alike)."""
        return self.alpha + self.beta

    def survival(self, k) -> np.ndarray:
        """S(k) = B(α, β + k)/B(α, β), the probability of surviving k renewals."""
        k = np.asarray(k, dtype=float)
        return np.exp(betaln(self.alpha, self.beta + k) - betaln(self.alpha, self.beta))

    def summary(self) -> str:
        se = self.se or {}
        shown = ", ".join(f"{n} = {v:.4g}" + (f" ± {se[n]:.2g}" if n in se and n not in self.homogeneous else "")
                          for n, v in (("alpha", self.alpha), ("beta", self.beta)))
        edge = f"; customers alike in {', '.join(self.homogeneous)}" if self.homogeneous else ""
        return (f"sBG over {self.n} subscriptions ({self.churned} churned, {self.n - self.churned} censored): {shown} "
                f"(renew {self.renew:.4f}, concentration {self.concentration:.4g}); log-likelihood "
                f"{self.log_likelihood:.2f}{edge}")


def fit_sbg(renewals, churned, weights=None) -> SBGFit:
    """The shifted-beta-geometric maximum-likelihood estimates from subscriptions, each
    with its renewals survived and whether it then churned (else censored), with standard
    errors from the observed information.

    Raises
    ------
    ValueError
        When there is no subscription or no churn (then nothing says how often they churn).
    """
    k = np.asarray(renewals, dtype=float)
    c = np.asarray(churned, dtype=bool)
    w = np.ones_like(k) if weights is None else np.asarray(weights, dtype=float)
    if k.size == 0:
        raise ValueError("no subscription to fit the renewal model on")
    if not np.any(c & (w > 0)):
        raise ValueError("no subscription churned: nothing says how often they do")
    (ku, cu, wu0), counts = _collapse(k, c, w)
    wu, cu = wu0 * counts, cu.astype(bool)

    # working parameters: logit(β/(α + β)) (the mean renewal probability), ln(α + β)
    def unpack(phi) -> tuple[float, float]:
        renew, kappa = _expit(phi[0]), math.exp(phi[1])
        return kappa * (1 - renew), kappa * renew

    def ll(phi):
        return sbg_log_likelihood(*unpack(phi), ku, cu, wu)

    renew = 1 - float(np.sum(w * c) / max(np.sum(w * (k + c)), 1e-12))  # churns per renewal decision
    renew = min(max(renew, 1e-3), 1 - 1e-3)
    phi, value, ok = _maximise(ll, [(_logit(renew), math.log(s)) for s in (1.0, 5.0, 50.0)],
                               [(-RATIO_BOUND, RATIO_BOUND), (-LOG_BOUND, LOG_BOUND)])
    a, b = unpack(phi)
    rho = b / (a + b)
    alike = a + b >= HOMOGENEOUS
    cov = _covariance(ll, phi, np.array([True, not alike]), np.array([[-rho, 1.0], [1 - rho, 1.0]]))
    return SBGFit(a, b, value, int(round(w.sum())), int(round(float(np.sum(w * c)))), cov,
                  ("alpha", "beta") if alike else (), ok)


def fit_sbg_survivors(survivors: Sequence[int]) -> SBGFit:
    """:func:`fit_sbg` on a cohort's survivors at the start of each period (the first is
    the cohort's size): n_(t−1) − n_t churned after t − 1 renewals, the last n_K still
    running after K renewals (Fader and Hardie 2007's data)."""
    n = np.asarray(survivors, dtype=float)
    if n.size < 2 or np.any(np.diff(n) > 0) or np.any(n < 0):
        raise ValueError("expected a cohort's non-increasing survivor counts, the first its size")
    K = n.size - 1
    k = np.concatenate([np.arange(K), [K]])
    churned = np.concatenate([np.ones(K, dtype=bool), [False]])
    w = np.concatenate([n[:-1] - n[1:], [n[-1]]])
    return fit_sbg(k, churned, w)


def fit_renewal(history: SubscriptionHistory) -> SBGFit:
    """:func:`fit_sbg` on a :class:`SubscriptionHistory`."""
    return fit_sbg(history.renewals, history.churned)


# ----------------------------------------------------------------------------------------
# Into the scenario: the customer blocks and the installed base


def _sig(v: float) -> float:
    """``v`` to 6 significant digits."""
    return float(f"{v:.6g}")


def _probability(mean: float, se: float | None) -> float | dict:
    """A probability per trial: a beta with ``mean`` whose spread is the estimate's standard
    error (concentration = mean (1 − mean) / se² − 1), or the plain mean without one."""
    mean = min(max(mean, 1e-6), 1 - 1e-6)
    if se is None or se <= 0:
        return _sig(mean)
    concentration = max(mean * (1 - mean) / se ** 2 - 1, 2.0)
    return {"dist": "beta", "mean": _sig(mean), "concentration": _sig(concentration)}


def repeat_block(fit: BGNBDFit, history: RepeatHistory | None = None) -> dict:
    """The ``customer`` block of a segment of repeat buyers (format A.1): per_month (a gamma
    per trial whose cv is the estimate's relative standard error), rate_cv, dropout (a beta
    per trial), dropout_concentration and, when the history has repeat purchases with
    amounts, their values (empirical; at most :data:`MAX_EMPIRICAL` quantiles). A
    heterogeneity read as none (:data:`HOMOGENEOUS`: the customers look alike) is left out."""
    rep: dict = {}
    se = fit.per_month_se
    if se is not None and se > 0:
        rep["per_month"] = {"dist": "gamma", "mean": _sig(fit.per_month), "cv": _sig(max(se / fit.per_month, 1e-3))}
    else:
        rep["per_month"] = _sig(fit.per_month)
    if "r" not in fit.homogeneous:
        rep["rate_cv"] = _sig(fit.rate_cv)
    rep["dropout"] = _probability(fit.dropout, fit.dropout_se)
    if not ({"a", "b"} & set(fit.homogeneous)):
        rep["dropout_concentration"] = _sig(fit.dropout_concentration)
    if history is not None and history.repeat_values.size:
        values = np.sort(history.repeat_values)
        if values.size > MAX_EMPIRICAL:
            values = np.quantile(values, (np.arange(MAX_EMPIRICAL) + 0.5) / MAX_EMPIRICAL)
        rep["value"] = {"dist": "empirical", "values": [round(float(v), 2) for v in values]}
    return {"repeat": rep}


def subscription_block(fit: SBGFit, history: SubscriptionHistory | None = None, *,
                       term_months: int | None = None) -> dict:
    """The ``customer`` block of a segment of subscribers (format A.1): term_months (the
    history's, else ``term_months``, else 1), renew (a beta per trial whose spread is the
    estimate's standard error), concentration (α + β; left out when at least
    :data:`HOMOGENEOUS`: customers alike) and the history's expansion at renewal when it has
    one."""
    sub: dict = {"term_months": term_months or (history.term_months if history is not None else 1),
                 "renew": _probability(fit.renew, fit.renew_se)}
    if not fit.homogeneous:
        sub["concentration"] = _sig(fit.concentration)
    if history is not None and history.expansion is not None and history.expansion > -1:
        sub["expansion"] = _sig(history.expansion)
    return {"subscription": sub}


CUSTOMER_COLUMNS = ("customer_id", "segment", "term_end", "value", "renewals", "term_start",
                    "first_purchase", "last_purchase", "purchases")
"""The columns of the ``customers`` file written (format A.5)."""


def installed_subscription_rows(history: SubscriptionHistory, segment: str) -> list[dict]:
    """The installed base of subscribers (format A.5): one row for each subscription active
    on the as-of date (its current term runs past it), with its term_end, value (blank when
    the log has none: drawn from the deal value), renewals survived and term_start."""
    return [{"customer_id": s.customer_id, "segment": segment, "term_end": s.term_end.isoformat(),
             "value": "" if s.value is None else round(s.value, 2), "renewals": s.renewals,
             "term_start": s.term_start.isoformat()}
            for s in history.subscriptions if s.state == "active"]


def installed_repeat_rows(history: RepeatHistory, segment: str) -> list[dict]:
    """The installed base of repeat buyers (format A.5): every customer of the history, with
    its first and last purchase and its repeat purchases x; the engine conditions each on
    that history (whether it is still active is drawn from its posterior, see
    :meth:`BGNBDFit.p_alive`)."""
    return [{"customer_id": c, "segment": segment, "first_purchase": f.isoformat(),
             "last_purchase": la.isoformat(), "purchases": int(x)}
            for c, f, la, x in zip(history.customer_ids, history.first, history.last, history.x)]


def customers_csv(rows: list[dict]) -> str:
    """Installed-base rows as the ``customers`` CSV (columns :data:`CUSTOMER_COLUMNS`,
    empty where a row's kind has none)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CUSTOMER_COLUMNS, lineterminator="\n", restval="")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def repeat_notes(history: RepeatHistory, fit: BGNBDFit) -> list[str]:
    """What the repeat-purchase fit rests on, as lines for the calibrated scenario's comments."""
    alive = float(np.sum(fit.p_alive(history.x, history.t_x, history.T)))
    notes = [f"{history.n} customers to {history.as_of}, {int(history.x.sum())} repeat purchases "
             f"({int(np.sum(history.x > 0))} customers bought again)", fit.summary(),
             f"per_month {fit.per_month:.4g}" + (f" ± {fit.per_month_se:.2g}" if fit.per_month_se else "")
             + f", rate_cv {fit.rate_cv:.4g}, dropout {fit.dropout:.4g}"
             + (f" ± {fit.dropout_se:.2g}" if fit.dropout_se else "")
             + f", dropout_concentration {fit.dropout_concentration:.4g}",
             f"expected active on {history.as_of}: {alive:.1f} of {history.n}"]
    if history.ignored_after:
        notes.append(f"{history.ignored_after} purchases after {history.as_of} ignored")
    if history.same_day:
        notes.append(f"{history.same_day} purchases on a day the customer had already bought on, merged into one")
    return notes



@dataclass
class CustomerCalibration:
    """The after-sale part of a calibration: each segment's ``customer`` block, the installed
    base's rows (the ``customers`` file), and the notes behind them."""

    blocks: dict[str, dict] = field(default_factory=dict)   # segment -> its customer block
    rows: list[dict] = field(default_factory=list)           # installed base (CUSTOMER_COLUMNS)
    notes: list[str] = field(default_factory=list)
    fits: dict[str, BGNBDFit | SBGFit] = field(default_factory=dict)


def _assign(rows: list, segments: Sequence[str], default: str | None, what: str) -> dict[str, list]:
    """Rows by the scenario segment they describe (their own, else ``default``).

    Raises
    ------
    ValueError
        When a row has no segment and there is no default, or names a segment the scenario
        does not have.
    """
    grouped: dict[str | None, list] = {}
    for s, v in by_segment(rows, default).items():  # spelt as the scenario spells it (case, spaces)
        grouped.setdefault(same_segment(s, segments) if s is not None else None, []).extend(v)
    if None in grouped:
        raise ValueError(f"the {what} names no segment and the scenario has several ({', '.join(segments)}): say "
                         "which one it describes")
    unknown = sorted(s for s in grouped if s is not None and s not in segments)
    if unknown:
        raise ValueError(f"the {what} names segment{'s' * (len(unknown) > 1)} {', '.join(map(repr, unknown))}, not in "
                         f"the scenario (its segments: {', '.join(segments)}); a customer comes from a won deal of "
                         "its segment")
    return {s: v for s, v in grouped.items() if s is not None}


def calibrate_customers(segments: Sequence[str], as_of: date, *, purchases: list[Purchase] | None = None,
                        terms: list[Term] | None = None, default_segment: str | None = None) -> CustomerCalibration:
    """Fit the after-sale models of the segments a transaction log (``purchases``) and a
    subscription log (``terms``) describe, as known on ``as_of``: a ``repeat`` block (BG/NBD,
    in customer months) for each segment of the transactions, a ``subscription`` block (sBG)
    for each segment of the subscriptions, and the installed base on ``as_of`` (every repeat
    buyer, conditioned on its history by the engine; every subscription active then).

    ``segments``: the scenario's segments; ``default_segment``: the segment of rows that
    name none.

    Raises
    ------
    ValueError
        When a row's segment is unknown or missing, a segment would be both a repeat buyer's
        and a subscriber's, a log has no customer on ``as_of``, a customer id is in the
        installed base twice, or a model cannot be fitted (no churn yet, say); the message
        says which.
    """
    out = CustomerCalibration()
    repeat = _assign(purchases or [], segments, default_segment, "transaction log")
    subscribed = _assign(terms or [], segments, default_segment, "subscription log")
    both = sorted(set(repeat) & set(subscribed))
    if both:
        raise ValueError(f"segment {', '.join(both)} is in both the transaction and the subscription log; a "
                         "segment's customers either renew a contract or buy again (give each log its own segment)")
    for seg, rows in repeat.items():
        history = summarize_purchases(rows, as_of)
        if not history.n:
            raise ValueError(f"segment {seg}: no customer had bought by {as_of}")
        fit = fit_repeat(history)
        out.fits[seg] = fit
        out.blocks[seg] = repeat_block(fit, history)
        out.rows += installed_repeat_rows(history, seg)
        out.notes += [f"{seg}, repeat purchase: {n}" for n in repeat_notes(history, fit)]
    for seg, rows in subscribed.items():
        subs = summarize_terms(rows, as_of)
        sbg = fit_renewal(subs)
        out.fits[seg] = sbg
        out.blocks[seg] = subscription_block(sbg, subs)
        installed = installed_subscription_rows(subs, seg)
        out.rows += installed
        out.notes += [f"{seg}, subscriptions: {n}" for n in subs.notes]
        out.notes.append(f"{seg}, subscriptions: {sbg.summary()}")
        out.notes.append(f"{seg}, subscriptions: term_months {subs.term_months} ({subs.term_share:.0%} of terms); "
                         + (f"expansion {subs.expansion:+.4f} over {subs.expansion_pairs} renewals with values; "
                            if subs.expansion is not None else "no values at renewal: no expansion; ")
                         + f"{len(installed)} active on {as_of} in the installed base")
    ids = Counter(r["customer_id"] for r in out.rows)
    twice = sorted(c for c, n in ids.items() if n > 1)
    if twice:
        raise ValueError(f"customer id {twice[0]!r}{f' (and {len(twice) - 1} more)' if len(twice) > 1 else ''} is in "
                         "both logs; the installed base needs one id per customer")
    return out

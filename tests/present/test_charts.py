"""The report's charts can be read (issue 14): every chart has its title, axis titles with units
(the scenario's currency), a legend naming exactly the series drawn whenever there are several,
tick labels that do not overlap (measured in headless Chromium), a y axis on the histogram, the
variance shares with the rest (summing to 100%), a colour key on the tornado, the sensitivity
read on its metric, and compare's P(target) per scenario, checked against the forecasts."""
from __future__ import annotations

import html
import io
import json
import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import forecaster as fc
from forecaster.analysis.compare import compare, compare_summary
from forecaster.analysis.sensitivity import sensitivity
from forecaster.calendar import periods
from forecaster.present import report
from forecaster.present.console import Console, print_comparison
from forecaster.results.outputs import run_to_folder, write_comparison
from forecaster.scenario.variants import load_variant

BASE = """\
name: shop
start: 2027-01-04
end: 2027-04-04
report_by: week
currency: EUR
trials: 400
seed: 7
stages: [lead, proposal]
segments:
  direct:
    leads: {per_week: 40}
    funnel:
      lead: {convert: {dist: beta, mean: 0.3, concentration: 40}, days: {dist: exponential, mean: 5}}
      proposal: {convert: 0.4, days: {dist: gamma, mean: 10, cv: 0.5}}
    deal_value: {dist: lognormal, median: 2000, sigma: 0.5}
team:
  reps:
    - {name: ana, segments: [direct], quota: 60000}
    - {name: bo, segments: [direct], quota: 60000}
commission: {period: quarter, tiers: [{rate: 0.1}]}
targets: {revenue: 150000}
"""
VARIANT = "name: more-leads\nscale:\n  segments.direct.leads.per_week: 1.3\n"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """A weekly run with its report, a comparison and a sensitivity, with their pages."""
    tmp = tmp_path_factory.mktemp("charts")
    (tmp / "base.yaml").write_text(BASE)
    (tmp / "variant.yaml").write_text(VARIANT)
    base = fc.load_scenario(tmp / "base.yaml")
    run_to_folder(base, tmp / "run")
    report.write_report(tmp / "run")
    variant = load_variant(tmp / "variant.yaml", tmp / "base.yaml")
    ds = compare(base, [variant], threads=1)
    write_comparison(tmp / "cmp", ds, compare_summary(ds))
    report.write_report(tmp / "cmp")
    summary, sds = sensitivity(tmp / "base.yaml", step=0.1, trials=200, threads=1)
    write_comparison(tmp / "sens", sds, summary, stem="sensitivity")
    report.write_report(tmp / "sens")
    return {"tmp": tmp, "base": base, "variant": variant,
            "run": (tmp / "run" / "report.html").read_text(), "compare": (tmp / "cmp" / "compare.html").read_text(),
            "sensitivity": (tmp / "sens" / "sensitivity.html").read_text(),
            "compare.json": json.loads((tmp / "cmp" / "compare.json").read_text()),
            "sensitivity.json": json.loads((tmp / "sens" / "sensitivity.json").read_text())}


def charts(page: str) -> list[ET.Element]:
    """Every chart of a page, parsed as XML (the report writes well-formed SVG)."""
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, re.S)]


def chart(page: str, css: str) -> ET.Element:
    found = [c for c in charts(page) if c.get("class") == f"chart {css}"]
    assert len(found) >= 1, css
    return found[0]


def text(el: ET.Element) -> str:
    return "".join(el.itertext())


def klass(el: ET.Element) -> set[str]:
    return set((el.get("class") or "").split())


def of_class(svg: ET.Element, *names: str) -> list[ET.Element]:
    return [el for el in svg.iter() if set(names) <= klass(el)]


def axis_titles(svg: ET.Element) -> dict[str, str]:
    out = {}
    for el in of_class(svg, "axis-title"):
        axis = "y" if "y" in klass(el) or "rotate" in (el.get("transform") or "") else "x"
        out[axis] = text(el)
    return out


def legend_and_series(svg: ET.Element) -> tuple[list[str], set[str]]:
    legend_items = [el for el in svg.iter() if "legend-item" in klass(el)]
    in_legend = {id(e) for item in legend_items for e in item.iter()}
    drawn = {el.get("data-series") for el in svg.iter() if el.get("data-series") is not None and id(el) not in in_legend}
    return [item.get("data-series") for item in legend_items], drawn - {""}


# --- structure, in the page's SVG ---------------------------------------------------------------

@pytest.mark.parametrize("which", ["run", "compare", "sensitivity"])
def test_every_chart_has_a_title_axis_titles_and_a_legend_naming_exactly_its_series(pages, which):
    found = charts(pages[which])
    assert found
    for svg in found:
        assert svg.find("title") is not None and text(svg.find("title")).strip(), svg.get("class")
        titles = axis_titles(svg)
        assert titles.get("x", "").strip(), (svg.get("class"), titles)
        legend, drawn = legend_and_series(svg)
        if len(drawn) > 1:
            assert sorted(legend) == sorted(drawn), (svg.get("class"), legend, drawn)
            assert len(legend) == len(set(legend))
        for el in of_class(svg, "tick", "x"):
            assert text(el).strip()


def test_money_axes_carry_the_scenarios_currency(pages):
    run = pages["run"]
    assert axis_titles(chart(run, "fan")) == {"x": "week starting (Monday)", "y": "revenue per week [EUR]"}
    assert axis_titles(chart(run, "histogram")) == {"x": "total revenue over the horizon [EUR]", "y": "share of trials"}
    assert axis_titles(chart(run, "ranges"))["x"] == "commission over the horizon [EUR]"
    cmp = pages["compare"]
    assert axis_titles(chart(cmp, "ranges levels"))["x"] == "revenue total over the horizon [EUR]"
    assert axis_titles(chart(cmp, "exceedance")) == {"x": "revenue total over the horizon [EUR]",
                                                     "y": "share of trials ≥ x"}
    assert axis_titles(chart(cmp, "signed differences"))["x"] == "variant − base, revenue total over the horizon [EUR]"
    assert "[deals]" in axis_titles([c for c in charts(cmp) if "differences" in klass(c)][1])["x"]
    unit = pages["sensitivity.json"].get("currency") or "currency"  # sensitivity.json may not say it
    assert axis_titles(chart(pages["sensitivity"], "signed tornado"))["x"] == f"change in total revenue [{unit}]"


def test_the_histogram_has_a_y_axis_of_shares_that_add_up_to_every_trial(pages):
    svg = chart(pages["run"], "histogram")
    ticks = of_class(svg, "tick", "y")
    assert len(ticks) >= 3 and all(text(t).endswith("%") for t in ticks)
    # the y axis maps height to share: read it back from two ticks, and the bars sum to 100%
    (y0, s0), (y1, s1) = [(float(t.get("y")) - 4, float(text(t).rstrip("%")) / 100) for t in (ticks[0], ticks[-1])]
    per_px = (s1 - s0) / (y0 - y1)
    bars_ = [el for el in svg.iter("rect") if el.get("data-series") == "share of trials in each bin"]
    assert len(bars_) == 40
    assert sum(float(b.get("height")) * per_px for b in bars_) == pytest.approx(1.0, abs=0.02)
    legend, _ = legend_and_series(svg)
    threshold = pages["base"].targets["revenue"]
    assert legend[0] == "share of trials in each bin" and legend[1].startswith(f"target {threshold:,.0f}: reached in ")


def test_the_variance_shares_show_the_rest_and_sum_to_100_percent(pages):
    summary = pages["sensitivity.json"]
    svg = chart(pages["sensitivity"], "bars shares")
    rows = [text(el) for el in of_class(svg, "row-label")]
    values = [float(text(el).rstrip("%")) for el in svg.iter("text") if re.fullmatch(r"\d+\.\d%", text(el))]
    assert rows[-1] == "the rest" and len(rows) == len(summary["variance_shares"]) + 1 == len(values)
    assert sum(values) == pytest.approx(100.0, abs=0.05 * len(values))
    rest = 1 - sum(v["share"] for v in summary["variance_shares"])
    assert values[-1] == pytest.approx(rest * 100, abs=0.051)
    legend, drawn = legend_and_series(svg)
    assert legend == ["one per-trial input", report.REST] and drawn == set(legend)


def test_the_tornado_says_which_colour_is_minus_and_which_plus(pages):
    summary = pages["sensitivity.json"]
    svg = chart(pages["sensitivity"], "signed tornado")
    legend, drawn = legend_and_series(svg)
    assert legend == ["lever −10%", "lever +10%"] and drawn == set(legend)
    items = {i.get("data-series"): i for i in svg.iter() if "legend-item" in klass(i)}
    zero = float(next(el for el in svg.iter("line") if el.get("x1") == el.get("x2") and el.get("stroke") == "#999")
                 .get("x1"))
    top = next(e for e in summary["levers"] if e["lever"] == summary["ranking"][0])
    for name, key in (("lever −10%", "minus"), ("lever +10%", "plus")):
        swatch = next(items[name].iter("rect")).get("fill")
        bar = next(el for el in svg.iter("rect") if el.get("data-series") == name)  # the top lever's
        assert bar.get("fill") == swatch
        left = float(bar.get("x"))
        assert (left >= zero - 0.1) == (top[key]["revenue"]["mean"] > 0), (name, left, zero)


def test_the_sensitivity_page_is_read_on_its_metric():
    levers = [{"lever": "a", "minus": {"total_bookings": {"mean": -5.0e5}}, "plus": {"total_bookings": {"mean": 4.0e5}}},
              {"lever": "b", "minus": {"total_bookings": {"mean": 1.0e5}}, "plus": {"total_bookings": {"mean": -2.0e5}}}]
    moves = {m: {"lever": "a", "total_bookings": {"mean": 4.0e5, "mean_ci_low": 3e5, "mean_ci_high": 5e5},
                 "won_deals": {"mean": 3.0}} for m in ("expansion", "stretching", "key_level")}
    summary = {"scenario": "s", "step": 0.1, "trials": 10, "seed": 1, "metric": "total_bookings", "currency": "EUR",
               "levers": levers, "ranking": ["a", "b"], "three_moves": moves,
               "variance_shares": [{"input": "x", "share": 0.25}], "skipped": []}
    page = report.render_sensitivity(summary, "now")
    assert "total revenue" not in page and "Effect on total bookings (tornado)" in page
    assert axis_titles(chart(page, "signed tornado"))["x"] == "change in total bookings [EUR]"
    assert "Share of the variance of total bookings" in page and "<th>bookings +10%</th>" in page
    svg = chart(page, "signed tornado")  # the bars are total bookings' effects: read them back off the axis
    ticks = [(float(t.get("x")), float(text(t).replace("−", "-").replace("k", "e3"))) for t in of_class(svg, "tick", "x")]
    (x0, v0), (x1, v1) = ticks[0], ticks[-1]
    bars_ = [el for el in svg.iter("rect") if el.get("data-series") in ("lever −10%", "lever +10%")]
    ends = [(float(b.get("x")), float(b.get("x")) + float(b.get("width"))) for b in bars_]
    value = [v0 + (e - x0) * (v1 - v0) / (x1 - x0) for e in (ends[0][0], ends[1][1], ends[3][0])]
    assert value == pytest.approx([-5.0e5, 4.0e5, -2.0e5], abs=2e3)  # a's −, a's +, b's + (its − is to the right)


def test_the_difference_axis_spans_the_data_and_says_where_zero_is():
    def plot(rows):
        svg = ET.fromstring(report.difference_chart(rows, "t", "variant − base [EUR]"))
        bars_ = [el for el in svg.iter("rect") if el.get("data-series") == "P10–P90 of the per-trial difference"]
        return svg, sum(float(b.get("width")) for b in bars_)

    far, width = plot([("v", 1000.0, 1100.0, 1200.0)])
    assert width > 0.5 * report.W  # the data fill the axis
    assert not of_class(far, "zero") and "← 0 is off the axis, to the left" in [text(e) for e in of_class(far, "zero-note")]
    assert all(float(text(t).rstrip("k").replace("−", "-")) > 0 for t in of_class(far, "tick", "x"))
    near, _ = plot([("v", 100.0, 600.0, 1200.0)])
    assert of_class(near, "zero") and not of_class(near, "zero-note") and "0" in [text(t) for t in of_class(near, "tick", "x")]
    neg, _ = plot([("v", -5000.0, -4800.0, -4600.0)])
    assert "0 is off the axis, to the right →" in [text(e) for e in of_class(neg, "zero-note")]


def test_tick_labels_say_different_values():
    assert report.tick_labels([0, 500_000, 1_000_000]) == ["0", "0.5M", "1.0M"]
    assert report.tick_labels([2000, 2500, 3000]) == ["2.0k", "2.5k", "3.0k"]
    assert report.tick_labels([-100_000, 0, 100_000]) == ["−100k", "0", "100k"]
    assert report.tick_labels([0, 0.005, 0.01], "share") == ["0%", "0.5%", "1.0%"]


# --- compare: P(target) per scenario ------------------------------------------------------------

def test_compare_gives_each_scenarios_probability_of_reaching_the_base_target(pages):
    s, base, variant = pages["compare.json"], pages["base"], pages["variant"]
    threshold = base.targets["revenue"]
    reach = {}
    for sc in (base, variant):  # independently: each scenario run on its own, as `run` would
        totals = fc.simulate(sc, trials=base.trials, seed=base.seed, threads=1)["revenue"].values.sum(axis=1)
        reach[sc.name] = totals >= threshold
    t = s["targets"]["revenue"]
    assert t["threshold"] == threshold
    assert t["probability"] == {name: float(r.mean()) for name, r in reach.items()}
    assert 0 < t["probability"]["shop"] < t["probability"]["more-leads"] < 1  # the check is not vacuous
    d = reach["more-leads"].astype(float) - reach["shop"].astype(float)
    diff = t["difference"]["more-leads"]
    assert diff["mean"] == pytest.approx(d.mean(), abs=1e-12)
    half = 1.959963984540054 * d.std(ddof=1) / np.sqrt(d.size)
    assert (diff["mean_ci_low"], diff["mean_ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert s["units"] == {"revenue": "EUR", "won_deals": "deals", "commission": "EUR"}
    assert set(s["targets"]) == {"revenue"}  # only what the base has a target for


def test_compare_page_shows_levels_p_target_and_both_distributions(pages):
    page, s = pages["compare"], pages["compare.json"]
    t = s["targets"]["revenue"]
    for name in ("shop", "more-leads"):
        assert f"<td>{t['probability'][name]:.1%}</td>" in page
        total = s["scenarios"][name]["revenue"]["total"]
        assert (f"<td>{name}</td><td>{report.money(total['mean'])}</td><td>{report.money(total['p10'])}</td>"
                f"<td>{report.money(total['p50'])}</td><td>{report.money(total['p90'])}</td>") in page
    levels = chart(page, "ranges levels")
    assert [text(e) for e in of_class(levels, "row-label")] == ["shop", "more-leads"]
    over = chart(page, "exceedance")
    legend, drawn = legend_and_series(over)
    assert legend == ["shop", "more-leads", f"target {t['threshold']:,.0f}"] and drawn == set(legend)
    dots = sorted(text(e) for e in of_class(over, "reach") if e.tag.endswith("text"))
    assert dots == sorted(f"{p:.1%}" for p in t["probability"].values())
    d = t["difference"]["more-leads"]
    assert f"{d['mean'] * 100:+.1f} pp ({d['mean_ci_low'] * 100:+.1f} pp to {d['mean_ci_high'] * 100:+.1f} pp)" in page


def test_compare_console_prints_p_target_per_scenario(pages):
    s = pages["compare.json"]
    buf = io.StringIO()
    print_comparison(s, "EUR", console=Console(file=buf, width=160, color_system=None))
    out = buf.getvalue()
    t = s["targets"]["revenue"]
    assert "Targets of shop" in out and f"revenue ≥ {t['threshold']:,.0f} EUR" in out
    for name, p in t["probability"].items():
        assert re.search(rf"{re.escape(name)}\s+│\s+{re.escape(f'{p:.1%}')}", out), name
    d = t["difference"]["more-leads"]
    assert f"{d['mean'] * 100:+.1f} pp" in out


def test_a_compare_folder_without_compare_nc_still_gets_its_page(pages, tmp_path):
    shutil.copy(pages["tmp"] / "cmp" / "compare.json", tmp_path / "compare.json")
    page = report.write_report(tmp_path)["compare.html"].read_text()
    assert 'class="chart ranges levels"' in page and 'class="chart exceedance"' not in page


# --- in a browser: nothing overlaps, nothing leaves the picture ---------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(not CHROMIUM and os.environ.get("FORECASTER_REQUIRE_BROWSER") != "1",
                                   reason="no chromium here (.ci/run installs it and requires this test)")

MEASURE = """<script>
const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
const out = [...document.querySelectorAll('svg.chart')].map(svg => ({
  css: svg.getAttribute('class'), label: svg.getAttribute('aria-label'), box: box(svg),
  titles: [...svg.querySelectorAll('.axis-title')].map(box),
  ticks: [...svg.querySelectorAll('text.tick.x')].map(box),
  legend: [...svg.querySelectorAll('.legend-item')].map(box),
  texts: [...svg.querySelectorAll('text')].map(t => ({box: box(t), text: t.textContent}))}));
document.body.setAttribute('data-measure', JSON.stringify(out));
</script>"""


def measure(page: str, folder: Path) -> list[dict]:
    """The boxes Chromium lays out for every chart's tick labels, legend items and texts."""
    path = folder / "page.html"
    path.write_text(page.replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={folder / 'profile'}", "--virtual-time-budget=3000", "--window-size=1000,2000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", path.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    found = re.search(r'data-measure="([^"]*)"', dom)
    assert found, dom[-2000:]
    return json.loads(html.unescape(found.group(1)))


def overlap(a, b, pad=0.5) -> bool:
    return a[0] < b[2] - pad and b[0] < a[2] - pad and a[1] < b[3] - pad and b[1] < a[3] - pad


def kit_page() -> str:
    """Fan charts of 13 and 52 weeks, 36 months, one month, 365 days and 8 quarters; the
    backtest's charts; bars with a name too long for its column; bands of 36 months."""
    rng = np.random.default_rng(3)
    body = []
    for start, end, per in (("2027-01-04", "2027-04-04", "week"), ("2027-01-04", "2028-01-02", "week"),
                            ("2027-01-01", "2029-12-31", "month"), ("2027-01-01", "2027-01-31", "month"),
                            ("2027-01-01", "2027-12-31", "day"), ("2027-01-01", "2028-12-31", "quarter")):
        starts = periods(date.fromisoformat(start), date.fromisoformat(end), per).starts
        labels = [report.period_name(str(s), per) for s in starts]
        q = np.percentile(rng.gamma(4, 1e4, size=(200, len(labels))), [10, 25, 50, 75, 90], axis=0)
        body.append(report.fan_chart(labels, q, f"{len(labels)} {per}s", per, f"revenue per {per} [EUR]", per))
    body.append(report.interval_chart([("2025-06-30 → 2025-07", 3e4, 4e4, 6e4, 3.9e4), ("2025-06-30 → 2025-08", 2e4,
                                        4.5e4, 6.5e4, 7e4)], "intervals", "revenue in the month [EUR]"))
    body.append(report.pit_chart([0, 1, 3, 2, 0, 0, 1, 0, 0, 1], "pit"))
    body.append(report.bars([("a lever whose name is far too long to fit in the column of labels, " * 2, 0.4, "x"),
                             ("the rest", 0.6, "rest")], "bars", fmt=lambda v: f"{v:.1%}", x_title="share",
                            kinds={"x": "#6baed6", "rest": "#bdbdbd"}, kind="share"))
    months = [report.period_name(str(s), "month") for s in
              periods(date(2027, 1, 1), date(2029, 12, 31), "month").starts]
    q3 = np.percentile(rng.gamma(4, 1e4, size=(200, len(months))), [10, 50, 90], axis=0)
    body.append(report.band_chart(months, [("one", "#d95f02", q3), ("two", "#1b9e77", q3 * 1.2)], "bands",
                                  "EUR per month", "month", "after-sale bookings"))
    return report._page("kit", body)


@needs_browser
@pytest.mark.parametrize("which", ["run", "compare", "sensitivity", "kit"])
def test_no_labels_overlap_and_every_text_stays_inside_its_chart(pages, which, tmp_path):
    assert CHROMIUM, "FORECASTER_REQUIRE_BROWSER=1 but chromium is not installed"
    page = kit_page() if which == "kit" else pages[which]
    found = measure(page, tmp_path)
    assert len(found) == page.count("<svg ")
    for c in found:
        ticks = c["ticks"]
        assert ticks, c["css"]
        for a, b in zip(ticks, ticks[1:]):
            assert a[2] + 2 <= b[0], (c["css"], a, b)  # left to right, at least 2 px apart
        for i, a in enumerate(c["legend"]):
            assert not any(overlap(a, b) for b in c["legend"][i + 1:]), c["css"]
        inside = c["box"]
        for t in c["texts"]:
            x0, y0, x1, y1 = t["box"]
            if t["text"]:
                assert inside[0] - 1 <= x0 and x1 <= inside[2] + 1 and inside[1] - 1 <= y0 and y1 <= inside[3] + 1, \
                    (c["css"], t)
        for title in c["titles"]:  # the axis titles clear the tick labels and the legend
            assert not any(overlap(title, b) for b in ticks + c["legend"]), c["css"]
        if c["css"] == "chart fan":  # a readable date axis: at least 3 dates (or the one period)
            n = int(c["label"].split()[0]) if c["label"][0].isdigit() else 3  # the run's: 13 weeks
            assert len(ticks) >= min(n, 3) and ticks[0][0] >= c["box"][0], c["label"]

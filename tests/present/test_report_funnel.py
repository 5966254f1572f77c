"""The report of a scenario with moves (v2 B) and with F1's outputs: each segment with moves
gets a funnel diagram (its own stages as boxes with their expected entries and eventual win
probability, forward arrows labelled with the conversion, one arrow per move labelled with its
mean share, ending at ``won`` for a move to won); with ``stage_entries`` and ``losses`` a
panel per stage of the entries and losses per period (mean, P10–P90) and their tables; with
``cycle_days`` a line of text. A scenario without moves or outputs gets none of it (its page is
pinned bit for bit by tests/present/test_after_sale_views.py)."""
from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import h5netcdf
import numpy as np
import pytest

import forecaster as fc
from forecaster.present import report
from forecaster.results.outputs import run_to_folder
from forecaster.scenario.model import WON

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
OUTPUTS = "\noutputs: {stage_entries: true, losses: true, cycle_days: true}\n"


def _run(tmp: Path, name: str, text: str, csv: str | None = None) -> dict:
    """Run the scenario ``text`` (written to tmp/name.yaml) into tmp/name and write its report."""
    if csv:
        shutil.copy(SCENARIOS / csv, tmp / csv)
    (tmp / f"{name}.yaml").write_text(text)
    sc = fc.load_scenario(tmp / f"{name}.yaml")
    run_to_folder(sc, tmp / name, threads=1)
    report.write_report(tmp / name)
    return {"scenario": sc, "page": (tmp / name / "report.html").read_text(),
            "summary": json.loads((tmp / name / "summary.json").read_text()), "folder": tmp / name}


@pytest.fixture(scope="module")
def journeys(tmp_path_factory):
    """scenarios/buying-journeys.yaml with 500 trials and every F1 output asked for."""
    text = (SCENARIOS / "buying-journeys.yaml").read_text()
    assert "trials: 20000" in text
    return _run(tmp_path_factory.mktemp("journeys"), "journeys", text.replace("trials: 20000", "trials: 500") + OUTPUTS,
                "buying-journeys-pipeline.csv")


def charts(page: str, css: str) -> list[ET.Element]:
    """The page's charts of class ``css``, parsed as XML (the report writes well-formed SVG)."""
    found = [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, re.S)]
    return [c for c in found if css in (c.get("class") or "").split()]


def diagram(page: str, segment: str) -> ET.Element:
    found = [c for c in charts(page, "funnel-diagram") if c.get("aria-label", "").startswith(f"funnel of {segment} ")]
    assert len(found) == 1, segment
    return found[0]


def text(el: ET.Element) -> str:
    return "".join(el.itertext())


def groups(svg: ET.Element, css: str) -> list[ET.Element]:
    return [g for g in svg.iter("g") if css in (g.get("class") or "").split()]


def scenario_moves(sc, segment: str) -> list[tuple[str, str]]:
    seg = sc.segments[segment]
    own = list(seg.stages or sc.stages)
    return [(stage, move.to) for stage in own for move in seg.funnel[stage].moves]


def input_means(folder: Path, segment: str) -> dict[str, float]:
    """Each per-trial quantity's mean over the trials, read from forecast.nc on its own."""
    with h5netcdf.File(folder / "forecast.nc", "r") as f:
        names = [q.decode() if isinstance(q, bytes) else q for q in f.variables["quantity"][:]]
        segments = [s.decode() if isinstance(s, bytes) else s for s in f.variables["segment"][:]]
        values = np.asarray(f.variables["inputs"][:, segments.index(segment), :], dtype=float)
    return dict(zip(names, values.mean(axis=0)))


def label_on_an_arm(svg: ET.Element) -> list[tuple[str, str]]:
    """The labels of moves that sit on a horizontal arm of another move's arrow (as the text
    widths of the report estimate them), by the label's (from, to)."""
    arms, labels = [], []
    for g in groups(svg, "move"):
        x0, ya, lane, yb, x1 = map(float, re.findall(r"[\d.]+", g.find("path").get("d")))
        arms += [(g, min(x0, lane), max(x0, lane), ya), (g, min(x1, lane), max(x1, lane), yb)]
        t = [t for t in g.iter("text") if t.get("class") == "move-label"][0]
        w, x = report.text_width(text(t)), float(t.get("x"))
        labels.append((g, x - w if t.get("text-anchor") == "end" else x, x + w if t.get("text-anchor") != "end" else x,
                       float(t.get("y"))))
    return [(g.get("data-from"), g.get("data-to")) for g, a, b, y in labels for h, lo, hi, ay in arms
            if h is not g and y - 10 <= ay <= y + 2 and lo < b and a < hi]


# --- the funnel diagram ---------------------------------------------------------------------------

@pytest.mark.parametrize("segment", ["consumer", "business"])
def test_one_arrow_per_move_labelled_with_its_mean_share(journeys, segment):
    sc, svg = journeys["scenario"], diagram(journeys["page"], segment)
    moves = groups(svg, "move")
    expected = scenario_moves(sc, segment)
    assert len(expected) >= 2
    assert sorted((g.get("data-from"), g.get("data-to")) for g in moves) == sorted(expected)
    means = input_means(journeys["folder"], segment)
    own = list(sc.segments[segment].stages or sc.stages)
    for g in moves:
        a, b = g.get("data-from"), g.get("data-to")
        share = means[f"move.{a}.{b}"]
        assert float(g.get("data-share")) == pytest.approx(share, rel=1e-5)
        label = [t for t in g.iter("text") if t.get("class") == "move-label"]
        assert [text(t) for t in label] == [report.pct(share)]
        kind = "back" if own.index(b) < own.index(a) else "skip"
        assert kind in g.get("class").split()
        assert len(list(g.iter("path"))) == 1 and len(list(g.iter("polygon"))) == 1  # the arrow and its head
    assert not label_on_an_arm(svg)


def test_the_labels_read_the_scenario_shares(journeys):
    """Fixed shares are drawn as written; the abandoned cart's beta share (mean 0.20) is the
    trials' mean, close to 20%."""
    labels = {(g.get("data-from"), g.get("data-to")): text([t for t in g.iter("text")][0])
              for segment in ("consumer", "business") for g in groups(diagram(journeys["page"], segment), "move")}
    assert labels[("requirements", "problem")] == "10%"
    assert labels[("validation", "requirements")] == "30%"
    assert labels[("consensus", "validation")] == "40%"
    assert labels[("problem", "vendors")] == "8%"
    cart = [g for g in groups(diagram(journeys["page"], "consumer"), "move") if g.get("data-to") == "solutions"][0]
    assert float(cart.get("data-share")) == pytest.approx(0.20, abs=0.01)
    assert labels[("vendors", "solutions")] == report.pct(float(cart.get("data-share")))


@pytest.mark.parametrize("segment", ["consumer", "business"])
def test_boxes_show_entries_and_win_probability_and_forward_arrows_the_conversions(journeys, segment):
    sc, svg, funnel = journeys["scenario"], diagram(journeys["page"], segment), journeys["summary"]["funnel"][segment]
    boxes = groups(svg, "stage")
    own = [st["stage"] for st in funnel["stages"]]
    assert own == list(sc.segments[segment].stages or sc.stages)  # F4: only its own stages
    assert [g.get("data-stage") for g in boxes] == [*own, WON]
    for g, st in zip(boxes, funnel["stages"]):
        lines = [text(t) for t in g.iter("text")]
        assert lines == [st["stage"], f"{report._count(st['entering'])} entries",
                         f"wins eventually {report.pct(st['win_probability'])}"]
    assert f"{report._count(funnel['won_eventually'])} new leads" in text(boxes[-1])
    forward = groups(svg, "forward")
    assert [(g.get("data-from"), g.get("data-to")) for g in forward] == list(zip(own, [*own[1:], WON]))
    means = input_means(journeys["folder"], segment)
    assert [[text(t) for t in g.iter("text")][0] for g in forward] == [f"converts {report.pct(means[f'convert.{s}'])}" for s in own]
    legend = [g.get("data-series") for g in svg.iter("g") if g.get("class") == "legend-item"]
    drawn = {g.get("data-series") for g in [*forward, *groups(svg, "move")]}
    assert set(legend) == drawn  # the legend names exactly what is drawn


def test_a_move_to_won_ends_at_won_and_a_segment_without_moves_keeps_its_bars(tmp_path):
    body = """\
        name: mixed
        start: 2027-01-01
        end: 2027-03-31
        report_by: week
        trials: 200
        seed: 1
        stages: [a, "b<x>", c, d]
        segments:
          web:
            stages: [a, c, d]
            leads: {per_day: 20}
            funnel:
              a: {convert: 0.5, days: 2, moves: [{to: d, share: 0.1}, {to: won, share: 0.05}]}
              c: {convert: 0.5, days: 2, moves: [{to: a, share: 0.2}, {to: won, share: 0.1}]}
              d: {convert: 0.5, days: 2, moves: [{to: c, share: 0.3}, {to: a, share: 0.15}]}
            deal_value: 100
          plain:
            leads: {per_day: 5}
            funnel:
              a: {convert: 0.5, days: 2}
              "b<x>": {convert: 0.5, days: 2}
              c: {convert: 0.5, days: 2}
              d: {convert: 0.5, days: 2}
            deal_value: 100
        """
    got = _run(tmp_path, "mixed", "\n".join(line[8:] for line in body.splitlines()) + "\n")
    page, svg = got["page"], diagram(got["page"], "web")
    moves = {(g.get("data-from"), g.get("data-to")): g for g in groups(svg, "move")}
    assert set(moves) == {("a", "d"), ("a", WON), ("c", "a"), ("c", WON), ("d", "c"), ("d", "a")}
    assert [text(t) for t in moves[("c", WON)].iter("text")] == ["10%"]
    # each arrow ends at its target's box: the arrowhead's tip on the box's side, within its height
    boxes = {g.get("data-stage"): next(g.iter("rect")) for g in groups(svg, "stage")}
    for (a, b), g in moves.items():
        tip = [tuple(map(float, p.split(","))) for p in next(g.iter("polygon")).get("points").split()][0]
        box = boxes[b]
        x0, y0 = float(box.get("x")), float(box.get("y"))
        assert tip[0] in (pytest.approx(x0), pytest.approx(x0 + float(box.get("width")))), (a, b)
        assert y0 < tip[1] < y0 + float(box.get("height")), (a, b)
    # here every two moves of a side span a common box: each runs in a lane of its own
    for side in ("back", "skip"):
        lanes = [float(re.search(r"H([\d.]+)", g.find("path").get("d")).group(1))
                 for g in moves.values() if side in g.get("class").split()]
        assert len(lanes) == 3 and len(set(lanes)) == 3, side
    # no two labels of the diagram overlap (their boxes, from the report's own text widths)
    placed = []
    for t in svg.iter("text"):
        if t.get("x") is None or t.get("transform"):
            continue
        w, x = report.text_width(text(t)), float(t.get("x"))
        x0 = x - w / 2 if t.get("text-anchor") == "middle" else x - w if t.get("text-anchor") == "end" else x
        placed.append((x0, x0 + w, float(t.get("y")) - 9, float(t.get("y")) + 2, text(t)))
    labels = [p for p in placed if re.fullmatch(r"[\d.]+%", p[4])]
    assert len(labels) == len(moves)
    for a in labels:
        for b in placed:
            assert a is b or a[1] <= b[0] or b[1] <= a[0] or a[3] <= b[2] or b[3] <= a[2], (a, b)
    assert not label_on_an_arm(svg)
    # the segment without moves: the bars of before, no diagram
    assert [c.get("aria-label") for c in charts(page, "funnel-diagram")] == [svg.get("aria-label")]
    bars = [c for c in charts(page, "bars") if c.get("aria-label") == "funnel of plain"]
    assert len(bars) == 1
    assert "b&lt;x&gt;" in page and "b<x>" not in page  # a name from the scenario is text


# --- stage volumes by period and cycle time --------------------------------------------------------

def test_stage_volumes_have_a_panel_per_stage_with_entries_and_losses(journeys):
    sc, page, m = journeys["scenario"], journeys["page"], journeys["summary"]["metrics"]
    assert "<h2>Stage volumes by month</h2>" in page
    (svg,) = charts(page, "stage-volumes")
    panels = [g for g in svg.iter("g") if g.get("class") == "panel"]
    assert [g.get("data-stage") for g in panels] == list(sc.stages)
    series = ("entries into the stage", "lost at the stage")
    assert [g.get("data-series") for g in svg.iter("g") if g.get("class") == "legend-item"] == list(series)
    for g in panels:
        stage = g.get("data-stage")
        lines = {p.get("data-series"): p for p in g.iter("polyline")}
        bands = {p.get("data-series") for p in g.iter("polygon")}
        assert set(lines) == set(series) == bands, stage
        dots = [c for c in g.iter("circle") if c.get("data-series") == series[0]]
        assert len(dots) == len(m[f"stage_entries.{stage}"]["by_period"])
        for dot, p in zip(dots, m[f"stage_entries.{stage}"]["by_period"]):
            assert f"mean {report._count(p['mean'])}, P10 {report._count(p['p10'])}, P90 {report._count(p['p90'])}" \
                in text(dot)
        lost = [c for c in g.iter("circle") if c.get("data-series") == series[1]]
        assert [text(c).split(": ")[1] for c in lost] == [
            f"mean {report._count(p['mean'])}, P10 {report._count(p['p10'])}, P90 {report._count(p['p90'])}"
            for p in m[f"losses.{stage}"]["by_period"]]
        ticks = [t for t in g.iter("text") if t.get("class") == "tick y"]
        assert ticks and text(ticks[0]) == "0"  # each panel has its own y axis from 0
    titles = [text(t) for t in svg.iter("text") if (t.get("class") or "").startswith("axis-title")]
    assert titles == ["month", "leads per month"]
    for stage in sc.stages:  # the totals table, summed over segments
        total = m[f"stage_entries.{stage}"]["total"]
        assert f"<td>{stage}</td><td>{report._count(total['mean'])}</td>" in page


def test_the_stage_entries_are_summed_over_segments(journeys):
    with h5netcdf.File(journeys["folder"] / "forecast.nc", "r") as f:
        entries = np.asarray(f.variables["stage_entries"][:], dtype=float)  # (trial, period, segment, stage)
    m = journeys["summary"]["metrics"]
    for s, stage in enumerate(journeys["scenario"].stages):
        assert m[f"stage_entries.{stage}"]["by_period"][0]["mean"] == pytest.approx(entries[:, 0, :, s].sum(axis=1).mean())


def test_cycle_days_in_a_line(journeys):
    cycle = journeys["summary"]["cycle_days"]
    (line,) = re.findall(r'<p class="cycle-days">(.*?)</p>', journeys["page"])
    assert f"mean {cycle['mean']:,.1f} days (P10 {cycle['p10']:,.1f}, P50 {cycle['p50']:,.1f}, P90 {cycle['p90']:,.1f})" in line
    assert f"{cycle['count']:,} deals" in line
    for seg, c in cycle["by_segment"].items():
        assert f"{seg}: mean {c['mean']:,.1f} days" in line


def test_the_funnel_tables_list_every_move(journeys):
    page = journeys["page"]
    for a, b in scenario_moves(journeys["scenario"], "business"):
        assert f"<td>{a} → {b}</td>" in page


# --- without moves or outputs: nothing new ---------------------------------------------------------

def test_a_scenario_without_moves_or_outputs_gets_no_such_section(tmp_path):
    text_ = (SCENARIOS / "minimal.yaml").read_text()
    got = _run(tmp_path, "minimal", re.sub(r"(?m)^trials: \d+", "trials: 300", text_))
    page = got["page"]
    assert not charts(page, "funnel-diagram") and not charts(page, "stage-volumes")
    assert "Stage volumes" not in page and "cycle-days" not in page and "table.funnel" not in page
    assert "<h2>Expected new leads entering each stage</h2>" in page  # the bars of before
    assert charts(page, "bars")


def test_outputs_without_moves_give_the_volumes_but_no_diagram(tmp_path):
    text_ = re.sub(r"(?m)^trials: \d+", "trials: 300", (SCENARIOS / "minimal.yaml").read_text())
    got = _run(tmp_path, "minimal", text_ + "\noutputs: {stage_entries: true}\n")
    page = got["page"]
    assert not charts(page, "funnel-diagram")
    (svg,) = charts(page, "stage-volumes")
    assert [g.get("data-stage") for g in svg.iter("g") if g.get("class") == "panel"] == list(got["scenario"].stages)
    assert [g.get("data-series") for g in svg.iter("g") if g.get("class") == "legend-item"] == ["entries into the stage"]
    assert "cycle-days" not in page


def test_pct():
    assert [report.pct(v) for v in (0.25, 0.1985, 0.08, 0.0035, 0.0, 1.0)] == ["25%", "19.9%", "8%", "0.35%", "0%",
                                                                               "100%"]

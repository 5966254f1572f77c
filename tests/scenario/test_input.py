"""Reading scenarios: YAML 1.2, validation messages (their wording is the interface), the
pipeline CSV, and the JSON Schema."""
from __future__ import annotations

import json
import textwrap

import jsonschema
import pytest
from conftest import SCENARIOS, VALID

import forecaster as fc
from forecaster.scenario.schema import json_schema
from forecaster.scenario.yamlio import load_yaml

TEAM = "team:\n  reps:\n    - {name: ana, segments: [direct], quota: 100000}\n"


def problems(tmp_path, text, files=None, name="s.yaml"):
    for fname, body in (files or {}).items():
        (tmp_path / fname).write_text(body)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    with pytest.raises(fc.ScenarioError) as info:
        fc.load_scenario(path)
    return str(info.value), info.value.problems


# --- YAML --------------------------------------------------------------------------------

def test_yaml_1_2_scalars():
    data, lines = load_yaml("a: 1e6\nb: no\nc: 0x10\nd: 2027-01-01\ne: ~\nf: [1, .5]\ng: TRUE\n", "f.yaml")
    assert data == {"a": 1e6, "b": "no", "c": 16, "d": "2027-01-01", "e": None, "f": [1, 0.5], "g": True}
    assert lines[("f", 1)] == 6


@pytest.mark.parametrize("text,fragment", [
    ("a: 1\na: 2\n", "a is given twice in one mapping (lines 1 and 2)"),
    ("a: !!python/object/apply:os.system ['true']\n", "YAML tag"),
    ("a: [\n", "is not valid YAML"),
    ("a: 1\n---\nb: 2\n", "is not valid YAML"),
    ("a: &x [1, 2]\nb: !!set {x}\n", "YAML tag"),
])
def test_yaml_refusals(text, fragment):
    with pytest.raises(fc.ScenarioError, match="f.yaml") as info:
        load_yaml(text, "f.yaml")
    assert fragment in str(info.value)


def test_alias_bombs_are_refused():
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        lines.append(f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]")
    with pytest.raises(fc.ScenarioError, match="more than"):
        load_yaml("\n".join(lines), "bomb.yaml")


# --- messages ------------------------------------------------------------------------------

@pytest.mark.parametrize("old,new,expected", [
    ("convert: 0.25", "convert: 1.3",
     "s.yaml:10: segments.direct.funnel.lead.convert must be a probability in [0, 1]; got 1.3"),
    ("segments:", "segmnts:", "segmnts is not a known key here (did you mean 'segments'?)"),
    ("dist: gamma", "dist: gama", "segments.direct.funnel.qualified.days.dist must be one of fixed, uniform, "
                                  "triangular, pert, normal, lognormal, gamma, exponential, weibull, beta, "
                                  "empirical; got 'gama' (did you mean 'gamma'?)"),
    ("sigma: 0.5", "sigma: 0", "segments.direct.funnel.proposal.days.sigma must be a number > 0; got 0"),
    ("per_week: 120", "per_week: -5", "segments.direct.leads.per_week must be a number >= 0; got -5"),
    ("end: 2027-03-31", "end: 2026-12-01", "end must be on or after start (2027-01-01); got 2026-12-01"),
    ("trials: 100", "trials: 0", "trials must be an integer >= 1; got 0"),
    ("trials: 100", "trials: 2.5", "trials must be an integer >= 1; got 2.5"),
    ("trials: 100", "trials: true", "trials must be an integer >= 1; got true"),
    ("start: 2027-01-01", "start: 01/01/2027", "start must be an ISO date (YYYY-MM-DD); got '01/01/2027'"),
    ("convert: 0.40", "convert: {dist: lognormal, median: 0.4, sigma: 0.1}",
     "segments.direct.funnel.qualified.convert must be a probability: its distribution must have support in [0, 1]"),
    ("convert: 0.40", "convert: {dist: uniform, low: 0.2, high: 1.2}",
     "convert must be a probability in [0, 1]: this uniform ranges over [0.2, 1.2]"),
    ("convert: 0.40", "convert: {dist: triangular, low: 0.2, mode: 0.1, high: 0.5}",
     "convert.mode must lie in [low, high] = [0.2, 0.5]; got 0.1"),
    ("convert: 0.40", "convert: {dist: beta, mean: 0.4}", "convert.concentration is missing: beta needs mean, concentration"),
    ("convert: 0.40", "convert: {dist: beta, mean: 0.4, concentraton: 9}", "(did you mean 'concentration'?)"),
    ("{per_week: 120}", "{per_week: 120, per_day: 3}", "segments.direct.leads must give exactly one of per_day, "
                                                       "per_week, per_month, or budget_per_month with cost_per_lead; "
                                                       "found per_day, per_week"),
    ("{per_week: 120}", "{budget_per_month: 1000}", "segments.direct.leads.cost_per_lead is missing"),
    ("{per_week: 120}", "{per_week: 120, seasonality: {13: 1.2}}", "seasonality.13 must be a calendar month in [1, 12]"),
    ("{per_week: 120}", "{per_week: 120, growth_per_month: -1}", "growth_per_month must be a growth rate > -1; got -1"),
    ("name: valid", "name: valid\nreport_by: monthly", "report_by must be one of day, week, month, quarter; "
                                                       "got 'monthly' (did you mean 'month'?)"),
    ("stages: [lead, qualified, proposal]", "stages: [lead, qualified, proposal, lead]",
     "stages[3] repeats 'lead'; each item must appear once"),
])
def test_messages_name_file_path_expectation_and_value(tmp_path, old, new, expected):
    assert old in VALID
    text, _ = problems(tmp_path, VALID.replace(old, new))
    assert expected in text, text
    assert "Traceback" not in text


def test_every_problem_is_reported_at_once(tmp_path):
    bad = (VALID.replace("convert: 0.25", "convert: 1.5").replace("sigma: 0.5", "sigma: -1")
           .replace("trials: 100", "trials: 0\ncolour: blue"))
    text, found = problems(tmp_path, bad)
    assert len(found) == 4, text
    assert text.splitlines()[0].endswith("s.yaml: 4 problems")
    for fragment in ("convert", "sigma", "trials", "colour"):
        assert fragment in text


def test_missing_and_extra_funnel_stages(tmp_path):
    text, _ = problems(tmp_path, VALID.replace("      proposal:", "      propsal:"))
    assert "segments.direct.funnel.proposal is missing: every stage in `stages` needs a funnel entry" in text
    assert "segments.direct.funnel.propsal is not one of the stages (did you mean 'proposal'?)" in text


def test_team_and_commission_rules(tmp_path):
    plan = "commission:\n  period: quarter\n  tiers:\n    - {up_to: 1.0, rate: 0.05}\n    - {up_to: 0.5, rate: 0.1}\n"
    text, _ = problems(tmp_path, VALID + plan)
    assert "commission needs a team" in text
    text, _ = problems(tmp_path, VALID + TEAM + plan)
    assert "commission.tiers[1].up_to must be absent: the last of the tiers has no upper bound" in text
    plan3 = plan + "    - {rate: 0.2}\n"
    text, _ = problems(tmp_path, VALID + TEAM + plan3)
    assert "commission.tiers[1].up_to must be greater than the previous tier's up_to (1)" in text
    two = TEAM + "    - {name: ana, segments: [direct], quota: 5}\n"
    text, _ = problems(tmp_path, VALID + two)
    assert "team.reps[1].name repeats the rep name 'ana'" in text
    text, _ = problems(tmp_path, VALID + TEAM.replace("[direct]", "[retail]"))
    assert "team.reps[0].segments[0] names 'retail', which is not a segment" in text
    assert "cover no rep for segment 'direct'" in text
    text, _ = problems(tmp_path, VALID + "targets: {commission: 5}\n")
    assert "targets.commission needs a commission plan" in text
    text, _ = problems(tmp_path, VALID + "targets: {revnue: 5}\n")
    assert "targets.revnue must be one of revenue, won_deals, commission, recognised_revenue," in text
    assert "got 'revnue' (did you mean 'revenue'?)" in text


def test_pipeline_file_problems_name_both_files_and_the_line(tmp_path):
    csv = ("deal_id,segment,stage,entered_stage,amount,owner\n"
           "a,direct,proposal,2026-12-01,100,\n"
           "a,retail,closing,2027-02-01,-5,zed\n")
    text, found = problems(tmp_path, VALID + TEAM + "pipeline: {file: p.csv}\n", files={"p.csv": csv})
    assert "s.yaml:" in text and "pipeline.file" in text
    for fragment in ("p.csv line 3: deal_id 'a' repeats line 2",
                     "p.csv line 3: segment 'retail' is not a segment of the scenario; segments: direct",
                     "p.csv line 3: stage 'closing' is not one of the stages",
                     "p.csv line 3: entered_stage must be on or before start (2027-01-01); got 2027-02-01",
                     "p.csv line 3: amount must be a number >= 0 or empty; got '-5'",
                     "p.csv line 3: owner 'zed' is not a rep of the team"):
        assert fragment in text, text
    text, _ = problems(tmp_path, VALID + "pipeline: {file: nowhere.csv}\n")
    assert "pipeline.file names 'nowhere.csv', which does not exist" in text
    text, _ = problems(tmp_path, VALID + "pipeline: {file: q.csv}\n", files={"q.csv": "id,segment\n1,direct\n"})
    assert "q.csv lacks the columns deal_id, stage, entered_stage" in text


def test_unreadable_and_empty_files(tmp_path):
    with pytest.raises(fc.ScenarioError, match="does not exist"):
        fc.load_scenario(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(fc.ScenarioError, match="is empty"):
        fc.load_scenario(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(fc.ScenarioError, match="must be a scenario"):
        fc.load_scenario(tmp_path / "list.yaml")


def test_error_is_a_value_error_and_a_forecaster_error(tmp_path):
    text, _ = problems(tmp_path, VALID.replace("trials: 100", "trials: -1"))
    assert issubclass(fc.ScenarioError, ValueError) and issubclass(fc.ScenarioError, fc.ForecasterError)


def test_scenario_from_dict_and_defaults():
    sc = fc.scenario_from_dict({
        "name": "d", "start": "2027-01-01", "end": "2027-01-31", "stages": ["x"],
        "segments": {"s": {"leads": {"per_day": 1}, "funnel": {"x": {"convert": 1, "days": 0}}, "deal_value": 1}}})
    assert (sc.trials, sc.seed, sc.report_by, sc.days) == (10000, 0, "month", 31)
    with pytest.raises(fc.ScenarioError, match="<scenario>: stages must have at least 1 item"):
        fc.scenario_from_dict({"name": "d", "start": "2027-01-01", "end": "2027-01-31", "stages": [], "segments": {}})


def test_funnel_follows_the_order_of_stages(tmp_path):
    path = tmp_path / "o.yaml"
    path.write_text(VALID.replace("      lead:      {convert: 0.25, days: {dist: exponential, mean: 4}}\n", "")
                    .replace("    deal_value:", "      lead: {convert: 0.25, days: 1}\n    deal_value:"))
    sc = fc.load_scenario(path)
    assert list(sc.segments["direct"].funnel) == ["lead", "qualified", "proposal"]


# --- JSON Schema ---------------------------------------------------------------------------

def test_json_schema_accepts_the_examples_and_refuses_broken_files():
    schema = json_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    for path in sorted(SCENARIOS.glob("*.yaml")):
        data, _ = load_yaml(path.read_text(), str(path))
        data = json.loads(json.dumps(data, default=str))  # as an editor sees it: string keys
        assert not list(validator.iter_errors(data)), path
    base, _ = load_yaml(VALID, "v.yaml")
    for mutate in (lambda d: d.pop("stages"), lambda d: d.update(colour="blue"),
                   lambda d: d["segments"]["direct"]["funnel"]["lead"].update(convert=1.5),
                   lambda d: d["segments"]["direct"]["funnel"]["lead"].update(convert={"dist": "gamma", "mean": 1, "cv": 1}),
                   lambda d: d["segments"]["direct"]["leads"].update(seasonality={"13": 1.0}),
                   lambda d: d.update(targets={"revnue": 5})):
        data = json.loads(json.dumps(base))
        mutate(data)
        assert list(validator.iter_errors(data)), "schema accepted a broken scenario"


def test_pipeline_problems_are_reported_with_the_scenarios_own(tmp_path):
    csv = "deal_id,segment,stage,entered_stage\nx,retail,proposal,2026-12-01\n"
    text, found = problems(tmp_path, VALID.replace("trials: 100", "trials: 0") + "pipeline: {file: p.csv}\n",
                           files={"p.csv": csv})
    assert len(found) == 2 and "trials must be" in text and "segment 'retail'" in text


@pytest.mark.parametrize("name, words", [
    ("a\nb", "line break"), ("evil\u202egnp", "bidirectional override"), ("x\x1b[31m", "control character"),
    ("n" * 201, "at most 200 characters"),
])
def test_names_refuse_what_would_garble_a_terminal_or_a_report(tmp_path, name, words):
    import json
    doc = {"name": "t", "start": "2027-01-01", "end": "2027-03-31", "stages": ["x"], "segments": {"s": {
        "leads": {"per_day": 1}, "funnel": {"x": {"convert": 0.5, "days": 1}}, "deal_value": 1}},
        "team": {"reps": [{"name": name, "segments": ["s"], "quota": 10}]}}
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(doc))
    with pytest.raises(fc.ScenarioError) as err:
        fc.load_scenario(path)
    assert "team.reps[0].name" in str(err.value) and words in str(err.value)


def test_week_dates_are_not_iso_calendar_dates(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text('name: t\nstart: "2027-W01-1"\nend: 2027-03-31\nstages: [x]\nsegments: {s: {leads: {per_day: 1}, '
                    'funnel: {x: {convert: 0.5, days: 1}}, deal_value: 1}}\n')
    with pytest.raises(fc.ScenarioError, match="start must be an ISO date"):
        fc.load_scenario(path)


def test_a_symbolic_link_to_a_scenario_reads_its_files_beside_what_it_leads_to(tmp_path):
    """A batch folder of links into a repository: the pipeline beside the real file is found;
    a pipeline beside the link, when there is one, still wins (a link never changes a
    scenario that read its files beside it)."""
    import shutil

    repo, links = tmp_path / "repo", tmp_path / "links"
    repo.mkdir()
    links.mkdir()
    shutil.copy(SCENARIOS / "saas-quarter.yaml", repo / "sq.yaml")
    shutil.copy(SCENARIOS / "saas-quarter-pipeline.csv", repo / "saas-quarter-pipeline.csv")
    (links / "sq.yaml").symlink_to(repo / "sq.yaml")
    assert len(fc.load_scenario(links / "sq.yaml").pipeline) == 340
    rows = (SCENARIOS / "saas-quarter-pipeline.csv").read_text().splitlines()
    (links / "saas-quarter-pipeline.csv").write_text("\n".join(rows[:11]) + "\n")  # ten deals beside the link
    assert len(fc.load_scenario(links / "sq.yaml").pipeline) == 10
    (links / "saas-quarter-pipeline.csv").unlink()
    (repo / "saas-quarter-pipeline.csv").unlink()  # nowhere: the error names the place beside the link
    with pytest.raises(fc.ScenarioError, match="links/saas-quarter-pipeline.csv"):
        fc.load_scenario(links / "sq.yaml")

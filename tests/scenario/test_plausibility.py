"""Values the format allows that read like a percentage written as a number (a tier rate of
8, a month's seasonality of 70, an expansion of 10) are said as warnings by run, validate
and compare, with the key path; the scenario stays valid and its numbers are unchanged
(a sales-ops user's trial: ``rate: 8`` paid a rep 582,379 on 626,092 of bookings, silently)."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from forecaster.cli import main
from forecaster.scenario.loading import load_scenario
from forecaster.scenario.plausibility import implausible

ROOT = Path(__file__).resolve().parents[2]


def _variant(tmp_path, old: str, new: str, name="saas-quarter.yaml") -> Path:
    text = (ROOT / "scenarios" / name).read_text()
    assert old in text
    path = tmp_path / name
    path.write_text(text.replace(old, new))
    for csv in (ROOT / "scenarios").glob("*.csv"):
        (tmp_path / csv.name).write_text(csv.read_text())
    return path


def test_a_tier_rate_above_one_is_said_with_its_path_and_the_file_stays_valid(tmp_path):
    path = _variant(tmp_path, "{up_to: 1.0, rate: 0.08}", "{up_to: 1.0, rate: 8}")
    res = CliRunner().invoke(main, ["validate", str(path)])
    assert res.exit_code == 0 and ": valid (" in res.output, res.output
    assert ("saas-quarter.yaml: commission.tiers[1].rate is 8: it pays 800% of the band's bookings; a percentage "
            "written as a number? (8% is 0.08)") in res.output


def test_seasonality_and_expansion_read_as_percentages_are_said(tmp_path):
    season = load_scenario(_variant(tmp_path, "seasonality: {1: 0.9, 3: 1.1}", "seasonality: {1: 0.9, 3: 70}"))
    assert implausible(season) == ["segments.smb.leads.seasonality.3 is 70: that month brings 70 times the leads; a "
                                   "percentage written as a number? (+70% is 1.7)"]
    grown = load_scenario(_variant(tmp_path, "expansion: 0.005", "expansion: 1.5", "saas-subscriptions.yaml"))
    said = implausible(grown)
    assert len(said) == 1 and ".customer.subscription.expansion is 1.5: each renewal multiplies the value by 2.5" \
        in said[0]


def test_the_shipped_scenarios_are_not_questioned():
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        assert implausible(load_scenario(path)) == [], path

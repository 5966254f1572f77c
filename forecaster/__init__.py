"""forecaster: Monte Carlo revenue and commission forecasts for sales funnels.

>>> import forecaster as fc
>>> scenario = fc.load_scenario("scenarios/minimal.yaml")      # doctest: +SKIP
>>> ds = fc.simulate(scenario, trials=2000)                     # doctest: +SKIP
>>> fc.summarize(ds, scenario)["metrics"]["revenue"]["total"]   # doctest: +SKIP
"""
from __future__ import annotations

from forecaster.errors import ForecasterError, OutputError, ScenarioError  # noqa: E402
from forecaster.scenario.loading import load_scenario, scenario_from_dict  # noqa: E402
from forecaster.scenario.model import Scenario  # noqa: E402
from forecaster.version import __version__  # noqa: E402


def __getattr__(name):  # heavy parts (numba, xarray) load on first use
    if name == "simulate":
        from forecaster.results.dataset import simulate
        return simulate
    if name == "summarize":
        from forecaster.results.summary import summarize
        return summarize
    if name == "write_outputs":
        from forecaster.results.outputs import write_outputs
        return write_outputs
    if name == "run":
        from forecaster.results.outputs import run
        return run
    if name == "json_schema":
        from forecaster.scenario.schema import json_schema
        return json_schema
    raise AttributeError(f"module 'forecaster' has no attribute {name!r}")


__all__ = ["__version__", "ForecasterError", "ScenarioError", "OutputError", "Scenario", "load_scenario",
           "scenario_from_dict", "simulate", "summarize", "write_outputs", "run", "json_schema"]

"""The honesty check's spread rule (forecaster.history.selection), on tables of coverage and
score where the right answer is known."""
from forecaster.history.selection import NOMINAL, choose_spread, spread_configs


def table(rows):
    """rows: {(parts, factor): (coverage, score)} -> the two lookups choose_spread takes."""
    return (lambda c, f: rows[(c, f)][0]), (lambda c, f: rows[(c, f)][1])


def test_short_as_fitted_widens_no_more_than_honesty_needs():
    """Short of 80% at factor 1: the smallest factor that reaches it, even where a wider one
    scores a little better in the inner months (that width is bought for a dozen months)."""
    kept = ("shocks",)
    rows = {(kept, 1.0): (0.70, 0.30), (kept, 1.5): (0.80, 0.27), (kept, 2.0): (0.90, 0.25), (kept, 3.0): (0.95, 0.29)}
    parts, factor, reached = choose_spread([kept], *table(rows), factors=(1.0, 1.5, 2.0, 3.0))
    assert (parts, factor, reached) == (kept, 1.5, 0.80)


def test_honest_as_fitted_is_never_widened():
    kept = ("shocks", "capacity")
    rows = {(kept, 0.75): (0.42, 0.19), (kept, 1.0): (0.83, 0.1805), (kept, 1.5): (1.0, 0.1731)}
    assert choose_spread([kept], *table(rows), factors=(0.75, 1.0, 1.5))[1] == 1.0


def test_narrows_when_the_history_shows_needlessly_wide_intervals():
    kept = ("shocks",)
    rows = {(kept, 0.5): (0.85, 0.20), (kept, 1.0): (0.95, 0.24)}
    assert choose_spread([kept], *table(rows), factors=(0.5, 1.0))[1] == 0.5


def test_an_unfair_score_never_buys_a_dishonest_interval():
    kept = ("shocks",)
    rows = {(kept, 0.5): (0.60, 0.10), (kept, 1.0): (0.80, 0.40)}
    assert choose_spread([kept], *table(rows), factors=(0.5, 1.0))[1] == 1.0
    assert rows[(kept, 1.0)][0] >= NOMINAL


def test_none_honest_takes_the_widest_covering_most():
    kept = ("capacity",)
    rows = {(kept, 1.0): (0.50, 0.2), (kept, 2.0): (0.70, 0.3), (kept, 4.0): (0.70, 0.5)}
    assert choose_spread([kept], *table(rows), factors=(1.0, 2.0, 4.0)) == (kept, 4.0, 0.70)


def test_which_spread_is_scaled_is_chosen_by_the_same_rule():
    """A capacity's cv alone cannot widen months the cap does not bind: with the shocks added
    back the set is honest at a lower score, so that set wins."""
    cap, both = ("capacity",), ("shocks", "capacity")
    rows = {(cap, 1.0): (0.60, 0.30), (cap, 2.0): (0.65, 0.31),
            (both, 1.0): (0.82, 0.28), (both, 2.0): (0.95, 0.33)}
    assert choose_spread([cap, both], *table(rows), factors=(1.0, 2.0)) == (both, 1.0, 0.82)


def test_spread_configs():
    fitted = ("shocks", "stalled", "capacity")
    # nothing with a spread kept, and honest already: nothing to scale
    assert spread_configs(("stalled",), fitted, (), 0.85) == []
    # short of nominal: the shocks are added back
    assert spread_configs(("stalled",), fitted, (), 0.70) == [("shocks", "stalled")]
    # ... unless forced off, or never fitted
    assert spread_configs(("stalled",), fitted, ("shocks",), 0.70) == []
    assert spread_configs(("stalled",), ("stalled",), (), 0.70) == []
    # a kept capacity: its own cv, and the shocks added back, whatever the coverage
    assert spread_configs(("capacity",), fitted, (), 0.90) == [("capacity",), ("shocks", "capacity")]
    # shocks kept: their own spread only
    assert spread_configs(("shocks",), fitted, (), 0.50) == [("shocks",)]


def _eager(configs, coverage, score, factors):
    """The rule as it was written before it asked lazily: every (parts, factor) evaluated."""
    trials = {(c, f): (coverage(c, f), score(c, f)) for c in configs for f in factors}
    candidates = []
    for c in configs:
        if coverage(c, 1.0) >= NOMINAL:
            honest = [(c, f) for f in factors if f <= 1.0 and trials[(c, f)][0] >= NOMINAL]
            if honest:
                candidates.append(min(honest, key=lambda k: trials[k][1]))
        else:
            wider = [(c, f) for f in sorted(factors) if f > 1.0 and trials[(c, f)][0] >= NOMINAL]
            if wider:
                candidates.append(wider[0])
    chosen = min(candidates, key=lambda k: trials[k][1]) if candidates else \
        max(trials, key=lambda k: (trials[k][0], k[1]))
    return chosen[0], chosen[1], trials[chosen][0]


def test_the_lazy_rule_chooses_as_the_eager_one_and_simulates_less():
    """On 2,000 random tables (coverages on a 1/12 grid, so that ties and the 80% edge
    occur; one or two sets), choose_spread picks what evaluating every factor picks, asks
    for each (parts, factor) at most once, and on average for far fewer than all of them."""
    import numpy as np

    from forecaster.history.selection import SCALE

    rng = np.random.default_rng(3)
    asked_total, all_total = 0, 0
    for _ in range(2000):
        configs = [("capacity",), ("shocks", "capacity")][: int(rng.integers(1, 3))]
        rows = {(c, f): (float(rng.integers(0, 13)) / 12, float(np.round(rng.random(), 2)))
                for c in configs for f in SCALE}
        asked: list[tuple] = []

        def coverage(c, f, rows=rows, asked=asked):
            asked.append(("coverage", c, f))
            return rows[(c, f)][0]

        def score(c, f, rows=rows, asked=asked):
            asked.append(("score", c, f))
            return rows[(c, f)][1]

        assert choose_spread(configs, coverage, score) == _eager(configs, *table(rows), SCALE)
        assert len(asked) == len(set(asked))
        asked_total += len(asked)
        all_total += 2 * len(rows)
    assert asked_total < 0.6 * all_total

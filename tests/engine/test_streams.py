"""Random streams: every name its own stream, so that segments are independent.

A stream's key hashes the stream's whole name (:func:`forecaster.engine._streams.stream_key`).
These tests fail if two segments share draws: identical revenue in every trial, a
correlation far from 0, or a total whose variance is not the sum of its parts.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

import forecaster as fc
from forecaster.engine._streams import run_key, stream_key

SEGMENT = ("{leads: {per_day: {dist: gamma, mean: 4, cv: 0.3}}, "
           "funnel: {x: {convert: {dist: beta, mean: 0.3, concentration: 20}, days: {dist: gamma, mean: 20, cv: 0.5}}}, "
           "deal_value: {dist: lognormal, median: 1000, sigma: 0.8}}")


def _two_segments(make, a: str, b: str, trials: int = 3000):
    ds = fc.simulate(make(f"""\
    stages: [x]
    segments:
      {a}: {SEGMENT}
      {b}: {SEGMENT}
    """, trials=trials))
    rev = ds["revenue_by_segment"].sum("period")
    return rev.sel(segment=a).values, rev.sel(segment=b).values


def _assert_independent(x: np.ndarray, y: np.ndarray) -> None:
    n = x.size
    assert not np.array_equal(x, y)
    r = np.corrcoef(x, y)[0, 1]
    assert abs(r) < 5 / math.sqrt(n), f"correlation {r:.3f} between segments that should be independent"
    # the variance of the total is the sum of the variances (no covariance), within sampling error:
    # var(x + y) / (var x + var y) = 1 + r, whose standard error is about 1 / sqrt(n)
    ratio = np.var(x + y, ddof=1) / (np.var(x, ddof=1) + np.var(y, ddof=1))
    assert abs(ratio - 1) < 5 / math.sqrt(n)


def test_names_with_colliding_crc32_draw_independently(make):
    # a known CRC-32 collision, also inside the stream names (CRC is linear: same prefix and suffix)
    assert zlib.crc32(b"plumless") == zlib.crc32(b"buckeroo")
    assert zlib.crc32(b"segment/plumless/leads") == zlib.crc32(b"segment/buckeroo/leads")
    key = run_key(7)
    assert stream_key(key, "segment/plumless/leads") != stream_key(key, "segment/buckeroo/leads")
    _assert_independent(*_two_segments(make, "plumless", "buckeroo"))


def test_two_identical_segments_are_independent(make):
    _assert_independent(*_two_segments(make, "north", "south"))


def test_stream_keys_differ_for_many_names_and_seeds():
    names = [f"segment/s{i}/{q}" for i in range(2000) for q in ("leads", "convert.x", "days/x")]
    for seed in (0, 1, 2**63 + 5):
        key = run_key(seed)
        keys = {int(stream_key(key, n)) for n in names}
        assert len(keys) == len(names)
    assert stream_key(run_key(0), "pipeline/convert") != stream_key(run_key(1), "pipeline/convert")

"""Random streams: named, keyed by the seed, reseeded for every trial.

Every kind of draw has its own stream, named after what it draws: ``segment/smb/leads``,
``segment/smb/convert.mql``, ``segment/smb/days/opportunity``, ``pipeline/convert``, ...
A stream's key is a hash of the run's seed (through ``numpy.random.SeedSequence``) and
its name; at the start of every trial the kernels reseed each stream from its key and the
trial's index (:mod:`forecaster.engine._streams`). So a trial's numbers depend only on the seed
and the trial's index: not on the number of threads, workers or blocks, nor on the trials
before it; the first N trials of a run are the same for any larger trial count; and two
scenarios run with the same seed draw the same random numbers for everything they share,
trial by trial.

The streams are data: :data:`forecaster.engine.interface.STREAMS` lists, for each kernel,
its streams' names and roles. :func:`stream_keys` expands that table into the keys of a
run (a :class:`KeySet` per kernel call), and :meth:`KeySet.streams` pairs them with the
calling thread's generators, one per role. A kernel checks on entry that it was given
exactly the streams it draws from.

Trials are still run in blocks of :data:`BLOCK_TRIALS`, but only for scheduling: each
thread reuses a small pool of generators whose states the kernels overwrite.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from forecaster.engine._streams import address, run_key, stream_key
from forecaster.engine.interface import N_ROLES, STREAMS, Streams

BLOCK_TRIALS = 1000
"""Trials per block of work (scheduling only: the numbers do not depend on it)."""


@dataclass(frozen=True)
class KeySet:
    """The streams of one kernel call: names and keys, grouped by role.

    Attributes
    ----------
    names : tuple of str
        Each stream's name, role by role (the order of ``keys``).
    keys : uint64 array, shape (n,)
    starts, counts : int64 arrays, shape (N_ROLES,)
        Where each role's streams start in ``keys``, and how many there are.
    """

    names: tuple
    keys: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    def streams(self, gens: tuple, addresses: np.ndarray) -> Streams:
        """These streams drawn with the given generators (one per role; see
        :func:`thread_generators`)."""
        return Streams(gens, addresses, self.keys, self.starts, self.counts)


def key_set(root: int, rows, fields: dict) -> KeySet:
    """The streams of a table's ``rows`` ((name, role), see ``interface.STREAMS``) with the
    name fields filled in: a field whose value is a sequence makes one stream per item."""
    names, roles = [], []
    for template, role in rows:
        if role in roles:
            raise ValueError(f"stream table: role {role} has two rows ({template})")
        listed = [f for f in fields if "{" + f + "}" in template and not isinstance(fields[f], str)]
        if len(listed) > 1:
            raise ValueError(f"stream table: {template} expands over more than one field")
        items = fields[listed[0]] if listed else [None]
        for item in items:
            names.append(template.format(**{**fields, **({listed[0]: item} if listed else {})}))
            roles.append(role)
    starts, counts = np.zeros(N_ROLES, dtype=np.int64), np.zeros(N_ROLES, dtype=np.int64)
    for i, role in enumerate(roles):
        if counts[role] == 0:
            starts[role] = i
        counts[role] += 1
    return KeySet(tuple(names), np.array([stream_key(root, n) for n in names], dtype=np.uint64), starts, counts)


@dataclass(frozen=True)
class StreamKeys:
    """The keys of a run's streams, for each kernel call.

    Attributes
    ----------
    parameters, new_leads : list of KeySet, one per segment
        Of ``draw_parameters`` and ``simulate_new_leads``.
    pipeline, shocks, capacity : KeySet
        Of ``simulate_pipeline``, ``apply_shocks`` and ``apply_capacity``.
    customers_new_leads : list of KeySet, one per segment; customers_pipeline : KeySet
        Of ``simulate_customers`` for the customers of each segment's new leads, and of the
        pipeline's deals; installed: of ``simulate_installed``.
    lost_stage_values : list of KeySet, one per segment
        Of ``simulate_lost_stage_values``.
    new_leads_moves, lost_leads_moves : list of KeySet (or None without moves), one per
        segment; pipeline_moves : KeySet or None
        Of ``simulate_new_leads_moves``, ``simulate_lost_leads_moves`` and
        ``simulate_pipeline_moves`` (v2 B, :mod:`forecaster.engine.moves`).
    lost_leads, won_stage_times : list of KeySet, one per segment; pipeline_stage_counts : KeySet
        v2 F1: of ``simulate_lost_leads``, and the count streams ``simulate_new_leads`` and
        ``simulate_pipeline`` are given (``interface.STREAMS``' ``entries_of_won`` and
        ``pipeline_loss``, after the kernels they call that draw from them).
    events, customers_events : list of KeySet (None for a segment without events), one per segment
        v2 F2: of ``simulate_events`` (its per-event streams, ``segment/<name>/events[i]/...``)
        and of ``simulate_customers`` for the customers of its events' won deals (empty lists
        in a run without events).
    drift_walks : KeySet or None
        v2 B.4: of ``moves.drift_walks`` (moves with a conversion drift; None otherwise).
    lost_stage_values_moves : list of KeySet (or None), one per segment
        v2 F11 with moves: of ``moves.simulate_lost_stage_values_moves`` (None without moves
        or without stage values).
    """

    parameters: list
    new_leads: list
    pipeline: KeySet
    shocks: KeySet
    capacity: KeySet
    customers_new_leads: list
    customers_pipeline: KeySet
    installed: KeySet
    lost_stage_values: list
    new_leads_moves: list
    pipeline_moves: KeySet | None
    lost_leads_moves: list
    lost_leads: list = field(default_factory=list)
    won_stage_times: list = field(default_factory=list)
    pipeline_stage_counts: KeySet | None = None
    unwon_leads: list = field(default_factory=list)
    events: list = field(default_factory=list)
    customers_events: list = field(default_factory=list)
    drift_walks: KeySet | None = None
    lost_stage_values_moves: list = field(default_factory=list)


def stream_keys(plan, seed: int) -> StreamKeys:
    """Keys of every stream of a run of ``plan`` with ``seed``, from ``interface.STREAMS``."""
    root = run_key(seed)
    stages = plan.stage_names

    def of(kernel, **fields):
        return key_set(root, STREAMS[kernel], {"stage": stages, **fields})

    params, leads = [], []
    for g, name in enumerate(plan.segment_names):
        params.append(of("draw_parameters", segment=name, quantity=plan.quantity_names))
        leads.append(of("simulate_new_leads", segment=name,
                        lead_stage=[stages[s] for s in plan.lead_days_order[g]]))
    customers = [of("simulate_customers", source=f"segment/{name}") for name in plan.segment_names]
    return StreamKeys(params, leads, of("simulate_pipeline"), of("apply_shocks"), of("apply_capacity"), customers,
                      of("simulate_customers", source="pipeline"), of("simulate_customers", source="installed"),
                      [of("simulate_lost_stage_values", segment=name) for name in plan.segment_names],
                      [of("simulate_new_leads_moves", segment=name) if plan.has_moves else None
                       for name in plan.segment_names],
                      of("simulate_pipeline_moves") if plan.has_moves else None,
                      [of("simulate_lost_leads_moves", segment=name) if plan.has_moves else None
                       for name in plan.segment_names],
                      [of("simulate_lost_leads", segment=name) for name in plan.segment_names],
                      [of("entries_of_won", segment=name) for name in plan.segment_names],
                      of("pipeline_loss"),
                      [of("simulate_unwon_leads", segment=name) for name in plan.segment_names],
                      [of("simulate_events", segment=name, event=[str(i) for i in range(plan.events_of(g))])
                       if plan.events_of(g) else None for g, name in enumerate(plan.segment_names)],
                      [of("simulate_customers", source=f"segment/{name}/events") if plan.events_of(g) else None
                       for g, name in enumerate(plan.segment_names)],
                      of("drift_walks") if plan.moves_drift else None,
                      [of("simulate_lost_stage_values_moves", segment=name)
                       if plan.has_moves and plan.has_stage_values else None for name in plan.segment_names])


_local = threading.local()


def thread_generators() -> tuple[tuple, np.ndarray]:
    """The calling thread's generators, one per stream role, and their state addresses.

    Their seeds do not matter: the kernels overwrite their states before every draw.
    """
    pool = getattr(_local, "pool", None)
    if pool is None:
        gens = tuple(np.random.Generator(np.random.PCG64(i)) for i in range(N_ROLES))
        pool = (gens, np.array([address(g) for g in gens], dtype=np.int64))
        _local.pool = pool
    return pool


def blocks(trials: int) -> list[tuple[int, int, int]]:
    """``(block, first_trial, n_trials)`` for each block of a run of ``trials`` trials."""
    return [(b, lo, min(BLOCK_TRIALS, trials - lo))
            for b, lo in enumerate(range(0, trials, BLOCK_TRIALS))]

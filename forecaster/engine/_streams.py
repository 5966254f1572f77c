"""Reseeding a PCG64 stream in place, for every trial, from inside a kernel.

Each random stream of a run is a ``numpy.random.Generator`` over PCG64 whose 256-bit
state (128-bit state and increment) is overwritten at the start of every trial with words
derived from the stream's 64-bit key and the trial's index by SplitMix64. A trial's draws
then depend only on (seed, stream, trial): not on the block it runs in, on the trials
before it, or on how many draws another scenario made, which is what lets scenarios share
their random numbers trial by trial (common random numbers).

The kernels see a stream's state through the address numpy exposes
(``bit_generator.ctypes.state_address``, a ``pcg64_state`` whose first field points at
the ``pcg64_random_t``); :func:`load_u64`/:func:`store_u64` read and write it, in
machine code under numba and through ctypes with ``NUMBA_DISABLE_JIT=1``, so both give the
same numbers. Both increment words are made odd, which keeps the increment odd whatever
the order numpy's build stores the two halves of a 128-bit number in.
"""
from __future__ import annotations

import ctypes
import hashlib

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

from forecaster.engine._numba import jit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
MASK64 = (1 << 64) - 1
S30, S27, S31, ONE, ZERO = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(1), np.uint64(0)


def load_u64(address):
    """The 64-bit word at ``address`` (pure-Python path; numba uses the overload)."""
    return np.uint64(ctypes.c_uint64.from_address(int(address)).value)


def store_u64(address, value):
    """Write a 64-bit word at ``address`` (pure-Python path; numba uses the overload)."""
    ctypes.c_uint64.from_address(int(address)).value = int(value)


@intrinsic
def _load_u64(typingctx, address):
    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], ir.IntType(64).as_pointer()))
    return types.uint64(types.int64), codegen


@intrinsic
def _store_u64(typingctx, address, value):
    def codegen(context, builder, signature, args):
        builder.store(args[1], builder.inttoptr(args[0], ir.IntType(64).as_pointer()))
        return context.get_dummy_value()
    return types.void(types.int64, types.uint64), codegen


@overload(load_u64)
def _load_u64_overload(address):
    return lambda address: _load_u64(address)


@overload(store_u64)
def _store_u64_overload(address, value):
    return lambda address, value: _store_u64(address, value)


@jit(inline="always")
def mix(x):
    """SplitMix64's output function: a bijective 64-bit hash."""
    z = x + GOLDEN
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


@jit(inline="always")
def reseed(address, key, trial):
    """Set the PCG64 stream at ``address`` to the state of stream ``key`` at ``trial``."""
    state = np.int64(load_u64(address))
    w0 = mix(key ^ mix(np.uint64(trial)))
    w1 = mix(w0)
    w2 = mix(w1)
    w3 = mix(w2)
    store_u64(state, w0)
    store_u64(state + 8, w1)
    store_u64(state + 16, w2 | ONE)
    store_u64(state + 24, w3 | ONE)
    store_u64(address + 8, ZERO)  # no buffered 32-bit half-draw


@jit(inline="always")
def expect(streams, role, n):
    """Raise unless a kernel call was given exactly ``n`` streams of ``role`` (a
    :class:`forecaster.engine.interface.Streams`): a kernel never draws from a stream it was
    not given, or from another one in its place."""
    if streams.counts[role] != n:
        raise ValueError("a kernel was not given the random streams it draws from (see interface.STREAMS)")


def python_of(helper):
    """A jitted helper's own Python function, for Python around a kernel: the same code without a
    call through numba, which would type every field of a record (``streams``) each time."""
    return getattr(helper, "py_func", helper)


@jit(inline="always")
def key_of(streams, role, index):
    """The key of the ``index``-th stream of ``role``."""
    return streams.keys[streams.starts[role] + index]


@jit(inline="always")
def reseed_role(streams, role, index, trial):
    """Set the generator of ``role`` to the ``index``-th stream of that role at ``trial``."""
    reseed(streams.addresses[role], key_of(streams, role, index), trial)


def run_key(seed: int) -> int:
    """The 64-bit key of a run's seed (any integer >= 0), via SeedSequence."""
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0])


def stream_key(seed_key: int, name: str) -> np.uint64:
    """The key of the stream called ``name`` (e.g. ``segment/smb/days/lead``) in a run.

    The whole name counts: its UTF-8 bytes are hashed to 128 bits (BLAKE2b), and those
    with the run's key seed a ``SeedSequence``, whose first 64-bit word is the key. Two
    names share a stream only if their keys collide, about one chance in 2^64 a pair (a
    32-bit hash of the name made known pairs such as ``plumless`` and ``buckeroo`` share
    every draw).
    """
    digest = int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest(), "little")
    words = [int(seed_key) & MASK64, digest & MASK64, digest >> 64]
    return np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0]


def address(gen: np.random.Generator) -> int:
    """Where a PCG64 generator's state lives (what :func:`reseed` overwrites)."""
    return int(gen.bit_generator.ctypes.state_address)


def check_layout() -> None:
    """Refuse to run if numpy's PCG64 state is not laid out as :func:`reseed` expects.

    Reads the four words :func:`reseed` would overwrite and compares them with the state
    numpy reports, in either order of a 128-bit number's halves. A numpy release that moved
    the fields would make this fail loudly instead of writing into the wrong memory.
    """
    gen = np.random.Generator(np.random.PCG64(12345))
    st = gen.bit_generator.state["state"]
    mask = (1 << 64) - 1
    want = [st["state"] & mask, st["state"] >> 64, st["inc"] & mask, st["inc"] >> 64]
    base = int(ctypes.c_uint64.from_address(address(gen)).value)
    words = [ctypes.c_uint64.from_address(base + 8 * i).value for i in range(4)]
    swapped = [want[1], want[0], want[3], want[2]]
    if words != want and words != swapped:
        raise RuntimeError("numpy's PCG64 state layout is not the one forecaster reseeds in place "
                           f"(numpy {np.__version__}); please report this")


check_layout()

"""The thread policy of compiled models (codegen.threads.ThreadPolicy): results do not depend on the thread count,
and the count follows what measures fastest: one thread where the second is slower (a busy core, a small model),
the limit again once it is faster."""
from __future__ import annotations

import ctypes
import time

import numpy as np
import pytest

import sdflow
from sdflow.codegen.threads import ThreadPolicy

gomp = ctypes.CDLL("libgomp.so.1")


class _Machine:
    """A stand-in native call whose time depends on the thread count it runs with (read back from OpenMP)."""

    def __init__(self, seconds: dict[int, float]):
        self.seconds = seconds
        self.counts = []

    def __call__(self):
        threads = gomp.omp_get_max_threads()
        self.counts.append(threads)
        time.sleep(self.seconds[threads])


def test_policy_follows_the_faster_thread_count():
    policy = ThreadPolicy(2)
    quiet = _Machine({2: 0.002, 1: 0.004})
    for _ in range(40):
        policy.run(quiet)
    assert policy.current == 2 and quiet.counts[-10:] == [2] * 10
    assert 1 in quiet.counts  # it did try one thread
    busy = _Machine({2: 0.010, 1: 0.004})  # another process took a core: two threads wait at every barrier
    for _ in range(20):
        policy.run(busy)
    assert policy.current == 1 and busy.counts[-5:] == [1] * 5
    for _ in range(600):  # quiet again: a periodic probe finds two threads faster
        policy.run(quiet)
        if policy.current == 2 and quiet.counts[-1] == 2:
            break
    assert policy.current == 2


def test_fixed_policy_always_uses_its_limit():
    policy = ThreadPolicy(2, adaptive=False)
    machine = _Machine({2: 0.003, 1: 0.0001})
    for _ in range(30):
        policy.run(machine)
    assert set(machine.counts) == {2}


@pytest.mark.compiled
@pytest.mark.parametrize("example", ["cnn", "transformer", "mlp"])
def test_results_do_not_depend_on_the_thread_count(helpers, example):
    """Bit for bit: every kernel splits work over outputs, never a sum over threads."""
    module = helpers.load_example(example)
    model = module.build_model()
    rng = np.random.default_rng(3)
    feeds = {}
    for name, (dtype, dims) in module.INPUTS.items():
        shape = [3 if isinstance(d, str) else d for d in dims]
        feeds[name] = (rng.random(shape) < 0.8).astype(dtype) if dtype == np.int64 else \
            rng.standard_normal(shape).astype(dtype)
    compiled = sdflow.compile(model, passes="O2")
    results = {}
    for threads in (1, 2, 1, 2):
        compiled.set_threads(threads, adaptive=False)
        results.setdefault(threads, []).append([o.copy() for o in compiled(**feeds)])
    for a, b in zip(results[1] + results[2], results[2] + results[1]):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)

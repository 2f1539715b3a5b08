"""passes/quantization/gptq.py: GPTQ with lazy batch updates against the same algorithm column by column (same
codes), the reconstruction error ‖WX - ŴX‖² of GPTQ below RTN's, and RTN's own bounds."""
from __future__ import annotations

import numpy as np
import pytest

from sdflow.passes.quantization import gptq


def _layer(rng, rows=24, columns=160, samples=400):
    """A random layer and correlated calibration inputs X [samples, columns] (a few dead inputs)."""
    w = rng.standard_normal((rows, columns))
    mixing = rng.standard_normal((columns, columns)) / np.sqrt(columns)
    x = rng.standard_normal((samples, columns)) @ (np.eye(columns) + 0.8 * mixing)
    x[:, [3, 77]] = 0.0
    return w, x


def _error(w, q, x):
    return float(np.sum((x @ w.T - x @ q.T) ** 2))


@pytest.mark.parametrize("bits, group, block, act_order", [
    (4, -1, 128, False), (4, 32, 128, False),   # groups inside blocks
    (3, 96, 64, False),                          # groups that span blocks
    (4, 32, 64, True), (3, -1, 128, True)])      # act-order (static groups)
def test_lazy_batches_give_the_column_by_column_result(bits, group, block, act_order):
    rng = np.random.default_rng(bits * 100 + max(group, 0) + block + act_order)
    w, x = _layer(rng)
    h = gptq.hessian([x])
    fast = gptq.gptq(w, h, bits, group, act_order=act_order, block_size=block)
    plain = gptq.gptq_by_column(w, h, bits, group, act_order=act_order)
    np.testing.assert_array_equal(fast.codes, plain.codes)
    np.testing.assert_allclose(fast.scales, plain.scales, rtol=1e-12)
    np.testing.assert_array_equal(fast.zeros, plain.zeros)
    assert fast.codes.min() >= 0 and fast.codes.max() <= 2 ** bits - 1
    assert not fast.dequantized()[:, [3, 77]].any()  # dead inputs: zero weights


@pytest.mark.parametrize("bits, group", [(4, 32), (4, -1), (3, 32), (3, -1)])
def test_gptq_reconstructs_better_than_rtn(bits, group):
    rng = np.random.default_rng(7 + bits)
    w, x = _layer(rng)
    h = gptq.hessian([x])
    for symmetric in (False, True):
        for act_order in (False, True):
            ours = gptq.gptq(w, h, bits, group, symmetric=symmetric, act_order=act_order).dequantized()
            rounded = gptq.rtn(w, bits, group, symmetric=symmetric).dequantized()
            assert _error(w, ours, x) < 0.8 * _error(w, rounded, x), (symmetric, act_order)


def test_rtn_rounds_each_weight_to_its_grid():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((8, 70))
    q = gptq.rtn(w, 4, 32)
    assert q.scales.shape == (8, 3) and q.codes.shape == w.shape  # groups of 32, 32, 6 columns
    steps = np.repeat(q.scales, 32, axis=1)[:, :70]
    assert np.all(np.abs(q.dequantized() - w) <= steps / 2 + 1e-12)
    symmetric = gptq.rtn(w, 4, -1, symmetric=True)
    assert np.all(symmetric.zeros == 8)

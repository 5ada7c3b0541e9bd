"""land.size_threshold keeps the m + 1 largest scores by dropping what cannot enter and merging now and then (one top-k
of m + 1 per batch made it quadratic in the prompts: m grows with them): the same P, bit for bit, as the per-batch
top-k it replaces."""

import numpy as np
import pytest
import torch
from kn.methods import land


@torch.no_grad()
def _per_batch_topk(model, sets, mean_size, *, batch_size=64):
    """The former size_threshold: a top-(m + 1) of the kept and the new scores at every batch."""
    L, H = model.n_layers, model.n_neurons
    n = len(sets)
    m = min(int(round(float(mean_size) * n)), n * L * H)
    csr = land._Csr(list(sets))
    best, lowest = None, None
    for start in range(0, n, batch_size):
        flat = land._scores(model, csr, start, min(start + batch_size, n), model.encoder.device).reshape(-1)
        low = flat.min()
        lowest = low if lowest is None else torch.minimum(lowest, low)
        keep = flat.topk(min(m + 1, flat.numel())).values
        best = keep if best is None else torch.cat([best, keep]).topk(min(m + 1, best.numel() + keep.numel())).values
    if m == 0:
        return float(best[0])
    if m >= best.numel():
        return float(lowest) - 1.0
    return float((best[m - 1] + best[m]) / 2)


def _sets(n, L, H, seed):
    rng = np.random.default_rng(seed)
    return [frozenset(rng.choice(L * H, size=int(rng.integers(0, 12)), replace=False).tolist()) for _ in range(n)]


@pytest.mark.parametrize("n, mean_size, batch_size", [
    (150, 0.0, 64), (150, 1.0, 64), (150, 12.5, 16), (150, 200.0, 32), (40, 10_000.0, 8), (300, 3.0, 7)])
def test_the_same_threshold_as_a_top_k_per_batch(n, mean_size, batch_size):
    torch.manual_seed(0)
    model = land.LandDetector(3, 40, 4, generator=torch.Generator().manual_seed(1))
    sets = _sets(n, 3, 40, seed=n)
    assert land.size_threshold(model, sets, mean_size, batch_size=batch_size) == \
        _per_batch_topk(model, sets, mean_size, batch_size=batch_size)


def test_ties_give_the_same_threshold():
    model = land.LandDetector(2, 16, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.encoder.zero_()
        model.decoder.zero_()
    sets = _sets(100, 2, 16, seed=3)  # every score 0: one big tie
    for size in (0.0, 0.5, 5.0, 32.0):
        assert land.size_threshold(model, sets, size, batch_size=9) == _per_batch_topk(model, sets, size, batch_size=9)


def test_merges_happen_when_enough_scores_wait(monkeypatch):
    """Many batches with few survivors each: the kept scores are merged rarely, and the result does not move."""
    model = land.LandDetector(4, 64, 8, generator=torch.Generator().manual_seed(2))
    sets = _sets(2000, 4, 64, seed=9)
    calls = []
    topk = torch.Tensor.topk

    def counting(self, *args, **kwargs):
        calls.append(self.numel())
        return topk(self, *args, **kwargs)

    expected = _per_batch_topk(model, sets, 2.0, batch_size=16)
    monkeypatch.setattr(torch.Tensor, "topk", counting)
    assert land.size_threshold(model, sets, 2.0, batch_size=16) == expected
    assert len(calls) < 2000 // 16 / 4  # far fewer top-k than batches

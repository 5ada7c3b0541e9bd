"""overlap_by_fact and heldout_overlap_by_fact draw their across-fact pairs by index above _LISTED_PAIRS candidates
(linear in the pool, not facts x prompts): the same draws, so bitwise the same numbers as listing every pair."""

import time

import numpy as np
import pandas as pd
import pytest
from kn.methods import detectors


def _table(n_facts: int, n_relations: int, seed: int, *, templates: int = 10, missing: float = 0.0,
           positions: bool = True):
    rng = np.random.default_rng(seed)
    rows = []
    for f in range(n_facts):
        r = f % n_relations if f >= n_relations or n_relations < 4 else 0  # one relation gets a tiny share
        for t in range(templates):
            rows.append((f"P{r}:{f}#{t}", f"P{r}:{f}", f"P{r}", t))
    prompts = pd.DataFrame(rows, columns=["prompt_id", "fact_id", "relation", "template_position"])
    prompts = prompts.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # row order must not matter
    hot = rng.integers(0, 300, 40)
    sets = {}
    for p, fact in zip(prompts["prompt_id"], prompts["fact_id"]):
        if rng.random() < missing:
            continue
        size = int(rng.integers(0, 12))  # some empty sets: pairs of two empty sets are skipped
        sets[p] = frozenset(rng.choice(hot, size=min(size, 6), replace=False).tolist()
                            + rng.integers(0, 300, max(0, size - 6)).tolist())
    if not positions:
        prompts = prompts.drop(columns="template_position")  # the template is read from the prompt id
    return prompts, sets


def _both(monkeypatch, call):
    monkeypatch.setattr(detectors, "_LISTED_PAIRS", 10**12)
    listed = call()
    monkeypatch.setattr(detectors, "_LISTED_PAIRS", 0)
    drawn_by_index = []
    original = detectors._Pool._drawn

    def spy(self, *args):
        pairs = original(self, *args)
        drawn_by_index.append(pairs is not None)
        return pairs

    monkeypatch.setattr(detectors._Pool, "_drawn", spy)
    drawn = call()
    assert any(drawn_by_index)  # the index path did the drawing
    return listed, drawn


@pytest.mark.parametrize("n_facts, n_relations, n_pairs, missing, positions", [
    (60, 3, 50, 0.0, True),
    (90, 5, 7, 0.1, True),
    (40, 2, 500, 0.0, True),  # most facts keep every pair: the drawn path gives way to the listed one
    (75, 6, 20, 0.2, False),
])
def test_drawn_pairs_give_the_listed_numbers(monkeypatch, n_facts, n_relations, n_pairs, missing, positions):
    prompts, sets = _table(n_facts, n_relations, seed=n_facts, missing=missing, positions=positions)
    for seed in (0, 3):
        listed, drawn = _both(monkeypatch, lambda: detectors.overlap_by_fact(prompts, sets, seed=seed,
                                                                              n_pairs_per_fact=n_pairs))
        pd.testing.assert_frame_equal(listed, drawn, check_exact=True)
        assert listed["across_other_relation"].notna().all()


def test_drawn_pairs_give_the_listed_numbers_for_heldout_wordings(monkeypatch):
    prompts, sets = _table(80, 4, seed=5)
    heldout = {f: f"{f}#3" for f in prompts["fact_id"].unique()[:30]}
    listed, drawn = _both(monkeypatch, lambda: detectors.heldout_overlap_by_fact(prompts, sets, heldout, seed=1,
                                                                                  n_pairs_per_fact=9))
    pd.testing.assert_frame_equal(listed, drawn, check_exact=True)


def test_overlap_by_fact_grows_linearly_with_the_pool():
    """Facts x prompts pairs were listed per fact (4,000 facts: 49 s on the 2-core machine); now the pool's size
    barely changes the time per fact."""
    timings = {}
    for n in (300, 1200):
        prompts, sets = _table(n, 30, seed=n)
        began = time.perf_counter()
        detectors.overlap_by_fact(prompts, sets, seed=0)
        timings[n] = (time.perf_counter() - began) / n
    assert timings[1200] < 2.5 * timings[300], timings

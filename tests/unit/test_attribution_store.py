"""The attribution store: resumable after a kill at any moment, shardable, and exactly the single-run result."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch
from kn.attribution.kernel import integrated_gradients
from kn.attribution.store import AttributionStore, merge_attribution_stores
from kn.base.neurons import coarse_set, coarse_set_sparse
from kn.core.models import tiny_model

N_PROMPTS = 12


def _inputs():
    gen = torch.Generator().manual_seed(0)
    ids = [torch.randint(0, 128, (int(n),), generator=gen) for n in torch.randint(1, 7, (N_PROMPTS,), generator=gen)]
    targets = torch.randint(0, 128, (N_PROMPTS,), generator=gen).tolist()
    prompts = [" ".join(map(str, x.tolist())) for x in ids]
    return prompts, ids, targets


def _store(folder, loaded, steps=4):
    return AttributionStore(folder, identity=loaded.identity, steps=steps, rule="right", dtype="float32",
                            threshold=0.05, n_layers=loaded.adapter.n_layers, n_neurons=loaded.adapter.n_neurons)


def _by_key(store):
    table = store.read()
    return {row.key: row for row in table.itertuples()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        for column in ("neuron_ids", "neuron_scores", "layer_sums", "p_full", "p_zero"):
            np.testing.assert_array_equal(getattr(a[key], column), getattr(b[key], column))
        assert a[key].max_score == b[key].max_score


@pytest.fixture(scope="module")
def loaded():
    return tiny_model("llama", seed=5, n_layers=3, n_neurons=24)


@pytest.fixture(scope="module")
def single_run(loaded, tmp_path_factory):
    store = _store(tmp_path_factory.mktemp("single"), loaded)
    stats = store.compute(loaded, *_inputs(), flush_every=3)
    assert stats["computed"] == N_PROMPTS and len(store.parts()) == 4
    return store


def test_stored_rows_reproduce_the_dense_scores(loaded, single_run):
    prompts, ids, targets = _inputs()
    dense = integrated_gradients(loaded, ids, targets, steps=4)
    rows = _by_key(single_run)
    for i in range(N_PROMPTS):
        row = rows[single_run.key(prompts[i], targets[i])]
        np.testing.assert_allclose(row.layer_sums, dense.scores[i].sum(-1).numpy(), rtol=1e-6, atol=1e-9)
        for t in (0.05, 0.1, 0.2, 0.3, 0.5):
            assert coarse_set_sparse(row.neuron_ids, row.neuron_scores, row.max_score, t) == coarse_set(dense.scores[i], t)


def test_second_run_computes_nothing(loaded, single_run):
    stats = single_run.compute(loaded, *_inputs())
    assert (stats["computed"], stats["already_stored"]) == (0, N_PROMPTS)


def test_interrupted_run_resumes_to_the_same_result(loaded, single_run, tmp_path):
    store = _store(tmp_path, loaded)
    flushes = []

    def stop_after_two():
        flushes.append(1)
        if len(flushes) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.compute(loaded, *_inputs(), flush_every=3, on_flush=stop_after_two)
    assert len(store.done_keys()) == 6
    stats = store.compute(loaded, *_inputs(), flush_every=3)
    assert (stats["computed"], stats["already_stored"]) == (6, 6)
    _assert_same(_by_key(store), _by_key(single_run))


def test_killed_process_resumes_to_the_same_result(loaded, single_run, tmp_path):
    """SIGKILL at an arbitrary moment: no half-written part is ever visible, and the rerun completes the set."""
    script = textwrap.dedent(f"""
        import sys, time, torch
        torch.set_num_threads({torch.get_num_threads()})  # float sums are bitwise reproducible per thread count
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_attribution_store import _inputs, _store
        from kn.core.models import tiny_model
        loaded = tiny_model("llama", seed=5, n_layers=3, n_neurons=24)
        store = _store({str(tmp_path)!r}, loaded)
        store.compute(loaded, *_inputs(), flush_every=1, on_flush=lambda: time.sleep(1.0))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300  # a loaded CI machine may take long to import torch
    store = _store(tmp_path, loaded)
    while len(store.parts()) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, f"the job ended before it could be killed: {proc.stderr.read()[-2000:]}"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = len(store.done_keys())
    assert 3 <= partial < N_PROMPTS
    for part in store.parts():
        pd.read_parquet(part)  # every visible part is complete
    stats = store.compute(loaded, *_inputs())
    assert stats["computed"] == N_PROMPTS - partial
    _assert_same(_by_key(store), _by_key(single_run))


def test_merged_shards_equal_one_run(loaded, single_run, tmp_path):
    shards = []
    for index in range(2):
        store = _store(tmp_path / f"shard{index}", loaded)
        stats = store.compute(loaded, *_inputs(), shard_index=index, shard_count=2)
        assert 0 < stats["computed"] < N_PROMPTS
        shards.append(store.folder)
    merged = _store(merge_attribution_stores(shards, tmp_path / "merged"), loaded)
    _assert_same(_by_key(merged), _by_key(single_run))


def test_other_settings_are_refused(loaded, single_run):
    with pytest.raises(ValueError, match="other settings"):
        _store(single_run.folder, loaded, steps=5)

"""The paper's scale, without a model: time and peak memory of every step after attribution on a synthetic store.

    .venv/bin/python benchmarks/scale.py [--arch smollm2-135m] [--prompts 277170] [--steps all | a,b,c]
        [--land-prompts N] [--land-epochs E] [--sizes-from runs/smollm2-135m/attribution] [--work DIR] [--out x.json]
        [--threads T]
    .venv/bin/python benchmarks/scale.py --markdown RESULT.json [RESULT.json ...]   the table of book/reproduce.md

1. A prompt table like chapter 1's at population all (prompts.parquet's columns): PARAREL's 34 relations, 27,717 facts
   x 10 adapted templates = 277,170 prompts with the paper's 9:1 split (kn.data.pararel.load_adapted and build_prompts
   on $KN_DATA_DIR), the model's columns (target_id, p_target, ...) synthesised. Without the data, a synthetic table of
   the same shape (34 relations of 815 facts, 10 templates each). --prompts N < 277,170 keeps a seeded share of the
   facts of every relation and split (stratified).
2. A synthetic attribution store for the architecture (--arch: L x H), written by kn.attribution.store.AttributionStore
   .compute itself, exactly as chapter 2 writes it (16 prompts per part, the store's rows, keys and manifest), with the
   kernel replaced by a generator of scores: per prompt, a (stored, coarse) count pair resampled from a real store's rows
   (--sizes-from, read only; default runs/smollm2-135m/attribution when present) or, without one, lognormal counts
   (LOGNORMAL); coarse neurons drawn partly from a fact core, a relation pool and a template pool, so paraphrases overlap
   and relations share neurons, the rest uniform. The store is kept in --work and reused when complete.
3. The steps of chapters 3 and 4, calling the library as the notebooks do (STEPS lists them, in order; each step runs
   what it needs first). Every step records its seconds and its peak resident memory, sampled every 20 ms by a thread
   (psutil's RSS of this process; ru_maxrss from getrusage is recorded too, the process's high-water mark).

LAND training (the paper's schedule: 3 epochs, batch 8, lr 1e-4, rank 64) runs on every train prompt unless --land-prompts
caps the pairs (and --land-epochs the epochs); its seconds are then extrapolated by steps (epochs x ceil(pairs / 8)) and
the JSON says "extrapolated": true with the measured basis. The later steps use that detector, read out at the paper-ratio
P solved on the validation facts (the detector of run_land_study's read-out choice is trained without them: here one
detector serves both; the work is the same).

Writes benchmarks/results/scale_<arch>.json (or --out): the machine (platform, CPUs, torch threads, load), the store
(parts, bytes on disk and in memory), and per step: seconds, peak RSS, RSS before and after, what it processed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
import types
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
import pandas as pd
import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # kn from this checkout, installed or not

import kn.attribution.store as store_module  # noqa: E402
from kn.attribution.store import AttributionStore  # noqa: E402
from kn.base import neurons, overlap as set_overlap  # noqa: E402
from kn.base.params import StudyParams  # noqa: E402
from kn.book import findings  # noqa: E402
from kn.experiments import land_operating  # noqa: E402
from kn.methods import counterexamples, detectors, land  # noqa: E402
from kn.methods.counterexamples import _by_prompt, prompt_targets_for, training_data, validation_split  # noqa: E402

ARCHS = {"smollm2-135m": (30, 1536), "gpt2": (12, 3072), "llama-3.2-1b": (16, 8192), "gemma3-270m": (18, 2048)}
PAPER_PROMPTS = 277_170
LOGNORMAL = {"stored": (5.54, 0.95), "coarse": (2.83, 0.99)}  # log-mean, log-sd: SmolLM2's store of the default run
STEPS = {
    "prompts": "chapter 1's prompt table (PARAREL adapted, population all; model columns synthesised)",
    "store_write": "the synthetic store, through AttributionStore.compute (16 prompts per part, as chapter 2)",
    "store_read": "AttributionStore.read(): every part (chapters 3-6 start here)",
    "coarse_sets": "store.coarse_sets_by_prompt(prompts, t, table) at the coarse threshold",
    "table4": "findings.overlap_rows + findings.table4 (1000 bootstrap samples) + Fig. 1's pair Jaccards and ratios",
    "threshold_sweep": "findings.threshold_sweep over t = 0.1..0.5 (test facts)",
    "kn_refining": "coarse sets at t = 0.2, neurons.refine_relations, findings.table2, layer histograms",
    "land_training_data": "counterexamples.validation_split + training_data on the train split (same_template, k = 2)",
    "land_train": "land.train_land: 3 epochs, batch 8, lr 1e-4, rank 64 on the train pairs",
    "p_sweep": "land_operating.operating_points on the validation facts: P grid sweep, the paper-ratio P, top-k",
    "land_inference": "land.land_sets on every prompt at the paper-ratio P",
    "detector_relation_prior": "fact_mean_targets + detectors.relation_prior_sets for the test prompts",
    "detector_nearest_neighbour": "detectors.nearest_neighbour_sets: every test prompt against every train prompt",
    "detector_constant_oracle": "top_k_constant_set + target_sets(prompt_targets_for(test))",
    "overlap_tables": "detectors.overlap_by_fact per detector + findings.table7, detector_table, detector_comparisons",
}


# --------------------------------------------------------------------------- measuring


class PeakRss:
    """The largest RSS of this process while a step runs, sampled every ``interval`` s by a thread."""

    def __init__(self, interval: float = 0.02):
        self.process, self.interval = psutil.Process(), interval
        self.peak, self._stop = 0, threading.Event()
        self._thread = None

    def rss(self) -> int:
        return self.process.memory_info().rss

    def __enter__(self):
        self.peak, self._stop = self.rss(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _mb(n: float) -> float:
    return round(n / 2**20, 1)


def machine() -> dict:
    memory = psutil.virtual_memory()
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "cpus_usable": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "memory_total_gb": round(memory.total / 2**30, 1), "loadavg_start": list(os.getloadavg())}


# --------------------------------------------------------------------------- the prompt table


def _model_columns(prompts: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The columns chapter 1's scoring adds (target_id from the answer, the scores drawn), so the table is chapter 1's."""
    rng = np.random.default_rng([seed, 1])
    n = len(prompts)
    answers = prompts["answer"].unique()
    target = {a: zlib.crc32(a.encode()) % 49_152 for a in answers}
    out = prompts.copy()
    out["target_id"] = out["answer"].map(target).astype(np.int64)
    out["answer_n_tokens"] = rng.integers(1, 4, n)
    out["p_target"] = rng.beta(0.5, 4.0, n)
    out["rank_target"] = rng.geometric(0.3, n) - 1
    out["top1_id"] = np.where(out["rank_target"] == 0, out["target_id"], rng.integers(0, 49_152, n))
    out["p_top1"] = np.maximum(out["p_target"], rng.beta(2.0, 4.0, n))
    out["correct"] = out["rank_target"] == 0
    return out


def _synthetic_facts(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng([seed, 2])
    relations = [f"S{i:02d}" for i in range(34)]
    facts = pd.DataFrame([{"relation": r, "fact_index": i, "subject": f"subject {r}-{i}",
                           "object": f"object {r}-{rng.integers(0, 60)}"} for r in relations for i in range(815)])
    facts["split"] = np.where(rng.random(len(facts)) < 0.1, "test", "train")
    templates = pd.DataFrame([{"relation": r, "position": t, "template": f"[X] relation {r} wording {t} [Y].",
                               "provenance": "synthetic"} for r in relations for t in range(10)])
    return facts, templates


def build_prompt_table(n_prompts: int, seed: int) -> tuple[pd.DataFrame, str]:
    """(prompts like chapter 1's at population all, where they came from); a stratified share of the facts when
    n_prompts is below the paper's 277,170."""
    from kn.data import pararel

    try:
        data = pararel.load_adapted(StudyParams(seed=seed))
        facts, templates, source = data.facts, data.templates, "PARAREL adapted (the data folder, $KN_DATA_DIR)"
    except Exception as err:  # no data here: the same shape, synthesised
        facts, templates = _synthetic_facts(seed)
        source = f"synthetic: 34 relations x 815 facts x 10 templates (no PARAREL data: {type(err).__name__})"
    templates_per_fact = templates.groupby("relation").size()
    total = int(facts["relation"].map(templates_per_fact).sum())
    if n_prompts < total:
        share, parts = n_prompts / total, []
        for (relation, split), group in facts.groupby(["relation", "split"], sort=True):
            keep = max(1, int(round(share * len(group))))
            order = np.random.default_rng([seed, zlib.crc32(f"{relation}/{split}".encode())]).permutation(len(group))
            parts.append(group.iloc[np.sort(order[:keep])])
        facts = pd.concat(parts)
    prompts = pararel.build_prompts(facts, templates)
    return _model_columns(prompts, seed), source


# --------------------------------------------------------------------------- the synthetic store


def size_pairs(path: Path | None) -> tuple[np.ndarray, dict]:
    """(stored, coarse-at-0.2) neuron counts per prompt of a real store (read only, parquet files read directly, none
    moved), or None and the lognormal it falls back to."""
    pairs = []
    if path is not None and (path / "manifest.json").is_file():
        manifest = json.loads((path / "manifest.json").read_text())
        for part in sorted(path.glob("part-*.parquet")):
            try:
                table = pd.read_parquet(part, columns=["max_score", "neuron_scores"])
            except Exception:  # a part being written or damaged: skipped, never touched
                continue
            for top, scores in zip(table["max_score"], table["neuron_scores"]):
                pairs.append((len(scores), max(1, int(np.sum(scores > 0.2 * top)))))
        if pairs:
            arr = np.array(pairs, dtype=np.int64)
            return arr, {"kind": "resampled from a real store", "path": os.path.relpath(path, ROOT), "rows": len(arr),
                         "store_threshold": manifest.get("threshold"), "stored_mean": float(arr[:, 0].mean()),
                         "coarse_mean": float(arr[:, 1].mean())}
    return None, {"kind": "lognormal (no real store)", "log_mean_sd": LOGNORMAL}


class SyntheticKernel:
    """Stands in for kn.attribution.rules.attribute: dense [B, L, H] scores whose stored and coarse sets have the
    drawn sizes. input_ids are the prompts' row numbers; each prompt's draw depends on its row only."""

    def __init__(self, prompts: pd.DataFrame, n_layers: int, n_neurons: int, pairs, seed: int):
        self.L, self.H, self.seed, self.pairs = n_layers, n_neurons, seed, pairs
        self.relation = prompts["relation"].to_numpy()
        self.fact = prompts["fact_id"].to_numpy()
        self.template = prompts["template_position"].to_numpy()
        self.pools: dict = {}

    def _pool(self, kind: str, name: str, size: int) -> np.ndarray:
        key = (kind, name)
        if key not in self.pools:
            rng = np.random.default_rng([self.seed, zlib.crc32(f"{kind}:{name}".encode())])
            self.pools[key] = rng.choice(self.L * self.H, size=size, replace=False)
        return self.pools[key]

    def _draw(self, row: int) -> tuple[np.ndarray, np.ndarray, float]:
        rng = np.random.default_rng([self.seed, 3, row])
        if self.pairs is not None:
            n_stored, n_coarse = self.pairs[rng.integers(len(self.pairs))]
        else:
            n_stored = int(np.ceil(rng.lognormal(*LOGNORMAL["stored"])))
            n_coarse = min(n_stored, max(1, int(round(rng.lognormal(*LOGNORMAL["coarse"])))))
        n_stored, n_coarse = min(int(n_stored), self.L * self.H // 2), int(n_coarse)
        relation, fact = str(self.relation[row]), str(self.fact[row])
        # shares of the coarse set from a fact core, a relation pool and a template pool, the rest uniform: two
        # paraphrases then overlap at a Jaccard of ~0.16 (SmolLM2's real coarse sets: 0.21, chapter 3)
        sources = [self._pool("fact", fact, 16), self._pool("relation", relation, 400),
                   self._pool("template", f"{relation}#{self.template[row]}", 120)]
        shares = (0.6, 0.1, 0.1)
        chosen = [rng.choice(pool, size=min(len(pool), int(round(s * n_coarse))), replace=False)
                  for pool, s in zip(sources, shares)]
        structured = np.unique(np.concatenate(chosen))
        uniform = rng.integers(0, self.L * self.H, 3 * n_stored + 16)
        uniform = uniform[~np.isin(uniform, structured)]
        uniform = uniform[np.sort(np.unique(uniform, return_index=True)[1])]  # distinct, in draw order
        core = structured[rng.permutation(structured.size)[:n_coarse]]
        fill = max(0, n_coarse - core.size)
        core = np.concatenate([core, uniform[:fill]])
        rest = uniform[fill:fill + max(0, n_stored - core.size)]
        top = float(rng.lognormal(-5.0, 1.0))
        scores = np.concatenate([rng.uniform(0.21, 1.0, core.size), rng.uniform(0.051, 0.199, rest.size)]) * top
        if core.size:
            scores[0] = top
        return np.concatenate([core, rest]), scores.astype(np.float32), top

    def __call__(self, loaded, input_ids, target_ids, **_):
        rows = [int(r) for r in input_ids]
        scores = torch.zeros(len(rows), self.L * self.H)
        for j, row in enumerate(rows):
            ids, values, _ = self._draw(row)
            scores[j, torch.from_numpy(ids)] = torch.from_numpy(values)
        p = torch.rand(len(rows), self.L, generator=torch.Generator().manual_seed(rows[0]))
        return types.SimpleNamespace(scores=scores.view(len(rows), self.L, self.H), p_full=p, p_zero=p * 0.5)


def write_store(folder: Path, prompts: pd.DataFrame, arch: str, pairs, seed: int) -> dict:
    n_layers, n_neurons = ARCHS[arch]
    store = AttributionStore(folder, identity=f"synthetic-{arch}@scale-benchmark", steps=20, rule="right",
                             dtype="float32", threshold=0.05, n_layers=n_layers, n_neurons=n_neurons)
    kernel = SyntheticKernel(prompts, n_layers, n_neurons, pairs, seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # [L*H] vectors per row: one thread is fastest, and this is set-up, not a chapter's step
    try:
        with mock.patch.object(store_module, "attribute", kernel):
            stats = store.compute(None, prompts["prompt"].tolist(), list(range(len(prompts))),
                                  prompts["target_id"].tolist(), batch_size=16, flush_every=16)
    finally:
        torch.set_num_threads(threads)
    return {"computed": stats["computed"], "already_stored": stats["already_stored"], "torch_threads": 1}


def store_sizes(store: AttributionStore, table: pd.DataFrame) -> dict:
    """Parts and bytes on disk; in memory, the arrays' bytes and the other columns' (strings, numbers) as pandas
    counts them (deep), plus 112 bytes per array object; the read step's RSS growth is the measured figure."""
    parts = store.parts()
    array_columns = ("neuron_ids", "neuron_scores", "layer_sums", "p_full", "p_zero")
    arrays = sum(int(a.nbytes) + 112 for column in array_columns for a in table[column])
    other = int(table.drop(columns=list(array_columns)).memory_usage(deep=True).sum())
    return {"rows": len(table), "parts": len(parts), "disk_mb": _mb(sum(p.stat().st_size for p in parts)),
            "memory_mb": _mb(arrays + other), "arrays_mb": _mb(arrays), "other_columns_mb": _mb(other),
            "stored_neurons_mean": float(table["neuron_ids"].map(len).mean())}


# --------------------------------------------------------------------------- the steps


class Study:
    """Each step a method; ``need(name)`` runs a step's prerequisites once (recorded, marked not requested)."""

    def __init__(self, args):
        self.args, self.results, self.done, self.state = args, [], set(), {}
        self.params = StudyParams(coarse_threshold=0.2)  # the paper profile's values (params/smollm2-135m-paper.yaml)
        self.L, self.H = ARCHS[args.arch]
        self.work = Path(args.work or ROOT / ".cache" / "scale" / f"{args.arch}-{args.prompts}")

    def run(self, name: str, requested: bool = True, on_step=None):
        if name in self.done:
            return
        for before in DEPENDS.get(name, ()):
            self.run(before, requested=False, on_step=on_step)
        meter = PeakRss()
        started_rss = meter.rss()
        print(f"[scale] {name} ...", file=sys.stderr, flush=True)
        with meter:
            began, cpu = time.perf_counter(), time.process_time()
            detail = getattr(self, f"step_{name}")() or {}
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        row = {"step": name, "what": STEPS[name], "requested": requested, "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2),  # all threads; unlike the wall clock, not moved by a paused process
               "peak_rss_mb": _mb(meter.peak), "rss_before_mb": _mb(started_rss), "rss_after_mb": _mb(meter.rss()),
               **detail}
        print(f"[scale] {name}: {seconds:.1f} s, peak RSS {_mb(meter.peak):,.0f} MB", file=sys.stderr, flush=True)
        self.results.append(row)
        self.done.add(name)
        if on_step is not None:
            on_step()

    # chapter 1 and 2 ------------------------------------------------------------------------------------------------
    def step_prompts(self):
        prompts, source = build_prompt_table(self.args.prompts, self.args.seed)
        self.work.mkdir(parents=True, exist_ok=True)
        prompts.to_parquet(self.work / "prompts.parquet", index=False)
        self.state.update(prompts=prompts, prompt_source=source)
        split = prompts.drop_duplicates("fact_id")["split"].value_counts()
        return {"prompts": len(prompts), "facts": int(prompts["fact_id"].nunique()),
                "relations": int(prompts["relation"].nunique()), "train_facts": int(split.get("train", 0)),
                "test_facts": int(split.get("test", 0))}

    def step_store_write(self):
        pairs, source = size_pairs(Path(self.args.sizes_from) if self.args.sizes_from else None)
        self.state["size_source"] = source
        return write_store(self.work / "attribution", self.state["prompts"], self.args.arch, pairs, self.args.seed)

    def step_store_read(self):
        self.state["store"] = store = AttributionStore.open(self.work / "attribution")
        self.state["table"] = table = store.read()
        return {"rows": len(table), "parts": len(store.parts())}

    def step_coarse_sets(self):
        prompts, store = self.state["prompts"], self.state["store"]
        self.state["coarse"] = coarse = store.coarse_sets_by_prompt(prompts, self.params.coarse_threshold,
                                                                    self.state["table"])
        return {"sets": len(coarse), "coarse_mean": float(np.mean([len(s) for s in coarse.values()]))}

    # chapter 3 ------------------------------------------------------------------------------------------------------
    def step_table4(self):
        prompts, coarse, p = self.state["prompts"], self.state["coarse"], self.params
        overlap = findings.overlap_rows(prompts, coarse)
        findings.table4(overlap, n_boot=p.bootstrap_samples, seed=p.seed)
        test_sets = counterexamples.fact_sets_for(prompts[prompts["split"] == "test"], coarse)
        np.concatenate([set_overlap.pair_jaccards(s) for s in test_sets.values()])
        np.concatenate([set_overlap.union_ratios(s) for s in test_sets.values()])
        return {"facts": len(overlap), "N_s": float(overlap["N_s"].mean()), "R_so": float(overlap["R_so"].mean())}

    def step_threshold_sweep(self):
        sweep = findings.threshold_sweep(self.state["prompts"], self.state["store"], self.state["table"],
                                         self.params.threshold_sweep)
        return {"thresholds": len(sweep)}

    def step_kn_refining(self):
        prompts, store, p = self.state["prompts"], self.state["store"], self.params
        relation_of = dict(zip(prompts["fact_id"], prompts["relation"]))
        refine_sets = counterexamples.fact_sets_for(prompts, store.coarse_sets_by_prompt(prompts, p.refine_threshold,
                                                                                         self.state["table"]))
        lo, hi = p.refine_size_range
        refined, per_relation = neurons.refine_relations(refine_sets, relation_of, p0=p.refine_p_start,
                                                         step=p.refine_p_step, lo=lo, hi=hi)
        findings.table2(refined, relation_of, seed=p.seed)
        set_overlap.layer_histogram([s for sets in refine_sets.values() for s in sets], self.H, self.L)
        set_overlap.layer_histogram(list(refined.values()), self.H, self.L)
        return {"facts": len(refined), "refined_mean": float(np.mean([len(s) for s in refined.values()]))}

    # chapter 4 ------------------------------------------------------------------------------------------------------
    def step_land_training_data(self):
        prompts, coarse = self.state["prompts"], self.state["coarse"]
        self.state["hp"] = hp = land.LandHyperParams.from_params(self.params)
        labelled = validation_split(prompts, self.params.land_validation_fraction, self.params.seed)
        self.state["validation"] = labelled[labelled["split"] == "validation"]
        pairs, targets, _ = training_data(prompts, coarse, hp)
        self.state.update(pairs=pairs, training_targets=targets)
        return {"pairs": len(pairs), "validation_prompts": len(self.state["validation"]),
                "target_mean": float(np.mean([len(ids) for ids, _ in targets.values()]))}

    def step_land_train(self):
        pairs, targets, hp = self.state["pairs"], self.state["training_targets"], self.state["hp"]
        full_steps = hp.epochs * -(-len(pairs) // hp.batch_size)
        measured = pairs
        if self.args.land_prompts and self.args.land_prompts < len(pairs):
            pick = np.sort(np.random.default_rng(self.args.seed).permutation(len(pairs))[:self.args.land_prompts])
            measured = [pairs[i] for i in pick]
        run_hp = hp if not self.args.land_epochs else type(hp)(**{**hp.as_dict(), "epochs": self.args.land_epochs})
        steps = run_hp.epochs * -(-len(measured) // hp.batch_size)
        began = time.perf_counter()
        self.state["detector"], losses = land.train_land(measured, targets, self.L, self.H, run_hp)
        seconds = time.perf_counter() - began
        detail = {"pairs": len(pairs), "epochs": hp.epochs, "batch_size": hp.batch_size, "steps": full_steps,
                  "parameters": land.parameter_count(self.L, self.H, hp.rank), "extrapolated": steps != full_steps}
        if steps != full_steps:
            detail.update(measured_seconds=round(seconds, 2), extrapolated_seconds=round(seconds * full_steps / steps, 1),
                          basis={"pairs": len(measured), "epochs": run_hp.epochs, "steps": steps,
                                 "seconds_per_step": seconds / steps, "rule": "seconds x full steps / measured steps"})
        return detail

    def step_p_sweep(self):
        st = land_operating.StudySettings.from_params(self.params)
        points, sweep = land_operating.operating_points(
            self.state["detector"], self.state["validation"], self.state["coarse"], st.threshold_grid, seed=st.seed,
            ratio=st.operating_ratio, min_size=st.min_set_size)
        self.state["threshold"] = float(points.loc["paper_ratio", "P"])
        return {"grid": len(sweep), "P_paper_ratio": self.state["threshold"],
                "validation_prompts": len(self.state["validation"])}

    def step_land_inference(self):
        prompts, coarse = self.state["prompts"], self.state["coarse"]
        ids = prompts["prompt_id"].tolist()
        self.state["land_all"] = land_all = dict(zip(ids, land.land_sets(self.state["detector"], [coarse[p] for p in ids],
                                                                         self.state["threshold"])))
        return {"prompts": len(ids), "land_mean": float(np.mean([len(s) for s in land_all.values()]))}

    def _split(self):
        prompts = self.state["prompts"]
        return prompts[prompts["split"] == "train"], prompts[prompts["split"] == "test"]

    def step_detector_relation_prior(self):
        prompts, land_all, hp = self.state["prompts"], self.state["land_all"], self.state["hp"]
        train, test = self._split()
        prompt_targets = _by_prompt(train, self.state["training_targets"], hp)
        self.state["fact_targets"] = targets = counterexamples.fact_mean_targets(
            prompt_targets, dict(zip(train["prompt_id"], train["fact_id"])))
        fact_relation = dict(zip(prompts["fact_id"], prompts["relation"]))
        self.state["relation_prior"] = detectors.relation_prior_sets(
            targets, fact_relation, test[["prompt_id", "relation"]], {p: len(land_all[p]) for p in test["prompt_id"]})
        return {"queries": len(test)}

    def step_detector_nearest_neighbour(self):
        coarse = self.state["coarse"]
        train, test = self._split()
        train_key = {p: p for p in train["prompt_id"]}  # same_template: a prompt's own target
        self.state["nearest_neighbour"], _ = detectors.nearest_neighbour_sets(
            {p: coarse[p] for p in train["prompt_id"]}, train_key, self.state["training_targets"],
            {p: coarse[p] for p in test["prompt_id"]}, self.state["threshold"])
        return {"train_prompts": len(train), "queries": len(test)}

    def step_detector_constant_oracle(self):
        coarse, land_all, hp, threshold = self.state["coarse"], self.state["land_all"], self.state["hp"], \
            self.state["threshold"]
        train, test = self._split()
        k = max(1, int(round(np.mean([len(land_all[p]) for p in train["prompt_id"]]))))
        constant = counterexamples.top_k_constant_set(self.state["fact_targets"], k)
        self.state["constant"] = {p: constant for p in test["prompt_id"]}
        oracle = detectors.target_sets(prompt_targets_for(test, coarse, hp), threshold)
        self.state["oracle"] = {p: oracle[p] for p in test["prompt_id"]}
        return {"k": k}

    def step_overlap_tables(self):
        prompts, coarse, p = self.state["prompts"], self.state["coarse"], self.params
        _, test = self._split()
        test_ids = test["prompt_id"].tolist()
        sets = {"coarse": {q: coarse[q] for q in test_ids}, "land": self.state["land_all"],
                **{m: self.state[m] for m in ("relation_prior", "nearest_neighbour", "constant", "oracle")}}
        study = types.SimpleNamespace(overlap={m: detectors.overlap_by_fact(test, s, seed=p.seed)
                                               for m, s in sets.items()})
        findings.table7(prompts, coarse, self.state["land_all"], n_boot=p.bootstrap_samples, seed=p.seed)
        findings.detector_table(study, n_boot=p.bootstrap_samples, seed=p.seed)
        findings.detector_comparisons(study, n_boot=p.bootstrap_samples, seed=p.seed)
        return {"detectors": len(sets), "test_facts": int(test["fact_id"].nunique())}


DEPENDS = {"store_write": ("prompts",), "store_read": ("store_write",), "coarse_sets": ("store_read",),
           "table4": ("coarse_sets",), "threshold_sweep": ("store_read",), "kn_refining": ("store_read",),
           "land_training_data": ("coarse_sets",), "land_train": ("land_training_data",), "p_sweep": ("land_train",),
           "land_inference": ("p_sweep",), "detector_relation_prior": ("land_inference",),
           "detector_nearest_neighbour": ("p_sweep",),
           "detector_constant_oracle": ("detector_relation_prior",),
           "overlap_tables": ("detector_nearest_neighbour", "detector_constant_oracle")}


LABELS = {  # the steps as book/reproduce.md's table names them
    "prompts": "chapter 1's prompt table", "store_write": "the store written through `compute` (reused when complete)",
    "store_read": "`AttributionStore.read()`", "coarse_sets": "coarse sets at t = 0.2, every prompt",
    "table4": "Table 4 and Fig. 1", "threshold_sweep": "threshold sweep t = 0.1..0.5 (test facts)",
    "kn_refining": "Knowledge-Neurons refining and Table 2",
    "land_training_data": "LAND's training data and validation split",
    "land_train": "LAND training: 3 epochs x every train prompt, batch 8", "p_sweep": "P chosen on validation facts",
    "land_inference": "LAND sets of every prompt", "detector_relation_prior": "relation prior",
    "detector_nearest_neighbour": "nearest neighbour, test x train prompts",
    "detector_constant_oracle": "constant set and oracle", "overlap_tables": "overlap tables of six detectors, Table 7",
}


def markdown(paths) -> str:
    """The scale table of book/reproduce.md from result files: one row per step, a column pair per file."""
    results = [json.loads(Path(p).read_text()) for p in paths]
    head = " | ".join(f"{r['arch']} ({r['n_layers']} x {r['n_neurons']}), "
                      f"{r['steps'][0].get('prompts', r['prompts_requested']):,} prompts: s | peak GiB" for r in results)
    lines = [f"| step | {head} |", "|---|" + "---|---|" * len(results)]
    for name in STEPS:
        cells = []
        for r in results:
            row = next((s for s in r["steps"] if s["step"] == name), None)
            if row is None:
                cells += ["", ""]
                continue
            seconds = (f"{row['extrapolated_seconds']:,.0f} (extrapolated)" if row.get("extrapolated")
                       else f"{row['seconds']:,.1f}")
            cells += [seconds, f"{row['peak_rss_mb'] / 1024:.1f}"]
        lines.append(f"| {LABELS[name]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--markdown"]:
        print(markdown(argv[1:]))
        return {}
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS), default="smollm2-135m")
    parser.add_argument("--prompts", type=int, default=PAPER_PROMPTS)
    parser.add_argument("--steps", default="all", help=f"all, or some of: {', '.join(STEPS)}")
    parser.add_argument("--land-prompts", type=int, default=0, help="train LAND on this many pairs and extrapolate")
    parser.add_argument("--land-epochs", type=int, default=0, help="train LAND this many epochs and extrapolate")
    default_sizes = ROOT / "runs" / "smollm2-135m" / "attribution"
    parser.add_argument("--sizes-from", default=str(default_sizes) if default_sizes.is_dir() else "",
                        help="a real store whose rows' sizes are resampled (read only); empty: lognormal")
    parser.add_argument("--work", default="", help="where the synthetic store goes (default .cache/scale/ARCH-N)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    parser.add_argument("--out", default="")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    wanted = list(STEPS) if args.steps == "all" else [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STEPS]
    if unknown:
        parser.error(f"unknown step(s) {unknown}; steps: {', '.join(STEPS)}")
    study = Study(args)
    info = machine()
    began = time.perf_counter()
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"scale_{args.arch}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    L, H = ARCHS[args.arch]

    def record(complete: bool) -> dict:  # after every step: a killed run keeps what it measured
        if "table" in study.state and "store_sizes" not in study.state:
            study.state["store_sizes"] = store_sizes(study.state["store"], study.state["table"])
        result = {
            "arch": args.arch, "n_layers": L, "n_neurons": H, "prompts_requested": args.prompts,
            "prompt_source": study.state.get("prompt_source"), "size_source": study.state.get("size_source"),
            "store": study.state.get("store_sizes"), "machine": {**info, "loadavg_end": list(os.getloadavg())},
            "memory_method": "peak RSS of this process sampled every 20 ms (psutil) while the step runs, absolute "
                             "(it includes what earlier steps hold); ru_maxrss is the process's high-water mark",
            "ru_maxrss_mb": _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024),
            "total_seconds": round(time.perf_counter() - began, 1), "complete": complete,
            "command": " ".join(["benchmarks/scale.py", *argv]),
            "extrapolated": any(r.get("extrapolated") for r in study.results), "steps": study.results,
        }
        out.write_text(json.dumps(result, indent=1) + "\n")
        return result

    for name in wanted:
        study.run(name, on_step=lambda: record(False))
    result = record(True)
    print(f"[scale] wrote {out}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()

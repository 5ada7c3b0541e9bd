"""kn.attribution.store: a model's run folder, where each chapter writes what later chapters read.

API
    AttributionStore(folder, ...)         sparse IG scores in atomic parts: resumable, shardable
        .coarse_sets_by_prompt(prompts, t) -> {prompt_id: frozenset}   rows named by prompt_id, scores by key
        .compute_log() -> [stats of each compute() call that scored prompts]   how fast the stored scores were made
    merge_attribution_stores(sources, target)
    atomic_write(path, write) / atomic_write_bytes(path, data)   the one atomic file write (from kn.base.io)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kn.attribution.rules import attribute
from kn.base.errors import MissingArtifact, ParameterError
from kn.base.io import atomic_write, atomic_write_bytes
from kn.base.neurons import coarse_set_sparse
from kn.base.params import StudyParams
from kn.base.progress import notice
from kn.base.progress import progress as progress_bar
from kn.base.runlock import locked_update

DAMAGED_FOLDER = "damaged"  # inside the store: parts that could not be read, kept for inspection


# --- attribution store -------------------------------------------------------------------------------------------
class AttributionStore:
    """Integrated-gradients scores of many prompts, kept sparse, written in atomic parts, resumable and shardable.

    Folder layout: ``manifest.json`` (what every row was computed with) and ``part-*.parquet`` files, each a batch of
    finished prompts. A row keeps every neuron scoring above ``threshold`` x the prompt's maximum (so coarse sets can be
    re-drawn for any t >= threshold without recomputing), the maximum itself, the per-layer sums of *all* scores, and the
    per-layer P(w_bar) and P(0) for the completeness check. A killed run loses at most the part being filled; a new run
    skips every key already written. A shard (index, count) takes the prompts whose key hash falls to it, and writes parts
    named after it, so shard folders merge by copying their parts together.
    """

    PART_COLUMNS = ("key", "prompt", "target_id", "max_score", "neuron_ids", "neuron_scores", "layer_sums",
                    "p_full", "p_zero")

    def __init__(self, folder: str | Path, *, identity: str, steps: int, rule: str, dtype: str, threshold: float,
                 n_layers: int, n_neurons: int, neuron: str = "ffn_out_input"):
        self.folder = Path(folder)
        self.damaged: list[Path] = []  # parts set aside by this object's reads
        self.manifest = {"model_identity": identity, "steps": steps, "rule": rule, "dtype": dtype,
                         "threshold": threshold, "n_layers": n_layers, "n_neurons": n_neurons, "neuron": neuron}
        path = self.folder / "manifest.json"
        if path.is_file():
            existing = json.loads(path.read_text())
            if existing != self.manifest:
                diff = {k: (existing.get(k), v) for k, v in self.manifest.items() if existing.get(k) != v}
                raise ParameterError(f"{self.folder} holds scores computed with other settings {diff} (stored, now): "
                                     "use another folder (`-p run_dir runs/NAME`) or delete it")
        else:
            atomic_write_bytes(path, json.dumps(self.manifest, indent=2, sort_keys=True).encode())

    @classmethod
    def open(cls, folder) -> "AttributionStore":
        """An existing store, with the settings its manifest records."""
        path = Path(folder) / "manifest.json"
        if not path.is_file():
            raise MissingArtifact(f"{path} does not exist: run chapter 2 (02_attribution) for this model first")
        m = json.loads(path.read_text())
        return cls(folder, identity=m["model_identity"], steps=m["steps"], rule=m["rule"], dtype=m["dtype"],
                   threshold=m["threshold"], n_layers=m["n_layers"], n_neurons=m["n_neurons"],
                   neuron=m.get("neuron", "ffn_out_input"))

    @classmethod
    def for_model(cls, folder, loaded, params: StudyParams) -> "AttributionStore":
        return cls(folder, identity=loaded.identity, steps=params.ig_steps, rule=params.ig_rule,
                   dtype=params.ig_dtype, threshold=params.store_threshold, n_layers=loaded.adapter.n_layers,
                   n_neurons=loaded.adapter.n_neurons, neuron=params.ig_neuron)

    def key(self, prompt: str, target_id: int) -> str:

        m = self.manifest
        text = f"{m['model_identity']}\x1f{prompt}\x1f{int(target_id)}\x1f{m['steps']}\x1f{m['rule']}\x1f{m['dtype']}"
        if m["neuron"] != "ffn_out_input":  # keys of the papers' definition stay as they were
            text += f"\x1f{m['neuron']}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    @staticmethod
    def shard_of(key: str, shard_count: int) -> int:
        return int(key, 16) % shard_count

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("part-*.parquet"))

    def _read_part(self, part: Path, columns) -> pd.DataFrame | None:
        """One part, or None when it is damaged (truncated, not parquet): it is then moved to damaged/, named in one
        line on stderr, and its prompts count as not computed (chapter 2 recomputes them; chapter 3 says so)."""
        try:
            return pd.read_parquet(part, columns=columns)
        except (pa.ArrowException, OSError, ValueError) as err:
            aside = self.folder / DAMAGED_FOLDER / part.name
            aside.parent.mkdir(exist_ok=True)
            os.replace(part, aside)
            self.damaged.append(aside)
            reason = " ".join(str(err).split())[:120]
            notice(f"damaged attribution part {part.name} ({reason}) moved to "
                   f"{self.folder.name}/{DAMAGED_FOLDER}/; its prompts will be recomputed by chapter 2")
            return None

    def read(self, columns=None) -> pd.DataFrame:
        """Every stored row (one per key), sorted by key; damaged parts are set aside (see _read_part). Parts are
        named with a random suffix, so their order says nothing: sorting makes every aggregate over the rows (a float
        sum's rounding included) the same in every run that stored the same scores."""
        tables = [t for t in (self._read_part(p, columns) for p in self.parts()) if t is not None]
        if not tables:
            return pd.DataFrame(columns=list(columns or self.PART_COLUMNS))
        table = pd.concat(tables, ignore_index=True)
        if "key" not in table:
            return table
        table = table.drop_duplicates("key", keep="first")
        return table.sort_values("key", kind="stable").reset_index(drop=True)

    def coarse_sets(self, t: float, table: pd.DataFrame | None = None) -> dict[str, frozenset]:
        """key -> coarse set (flat neuron ids scoring above t x the prompt's max), for any t >= the stored threshold."""
        if t < self.manifest["threshold"]:
            raise ValueError(f"t={t} is below the stored threshold {self.manifest['threshold']}: recompute to go lower")
        table = self.read() if table is None else table
        return {row.key: coarse_set_sparse(row.neuron_ids, row.neuron_scores, row.max_score, t)
                for row in table.itertuples()}

    def keys_for(self, prompts: pd.DataFrame) -> list[str]:
        """The store key of each row of ``prompts`` (columns prompt, target_id). Rows of two relations with the same
        prompt and answer share a key (one score); rows are named by prompt_id, never by key."""
        return [self.key(p, t) for p, t in zip(prompts["prompt"], prompts["target_id"])]

    def coarse_sets_by_prompt(self, prompts: pd.DataFrame, t: float,
                              table: pd.DataFrame | None = None) -> dict[str, frozenset]:
        """{prompt_id: coarse set at t} for every row of ``prompts`` (columns prompt_id, prompt, target_id); raises
        MissingArtifact naming how many rows have no stored scores (chapter 2 not finished, or another shard's).
        Only the rows of ``prompts``' keys are read into sets (a sweep over the test prompts stays a tenth the size)."""
        keys = self.keys_for(prompts)
        table = self.read() if table is None else table
        if len(set(keys)) < len(table):
            table = table[table["key"].isin(set(keys))]
        by_key = self.coarse_sets(t, table)
        absent = [pid for pid, k in zip(prompts["prompt_id"], keys) if k not in by_key]
        if absent:
            shown = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
            damaged = (f" ({len(self.damaged)} damaged part(s) were moved to {DAMAGED_FOLDER}/)" if self.damaged
                       else "")
            raise MissingArtifact(f"{len(absent)} of {len(keys)} prompts have no stored scores in "
                                  f"{self.folder.name}/{damaged}: {shown}; complete them with "
                                  "`kn chapter <params file> 02` (only the missing prompts are computed)")
        return {pid: by_key[k] for pid, k in zip(prompts["prompt_id"], keys)}

    def completeness(self, table: pd.DataFrame | None = None) -> pd.DataFrame:
        """Per layer: mean sum of scores against mean P(w_bar) - P(0), and the mean absolute gap between them."""
        table = self.read() if table is None else table
        table = table.sort_values("key", kind="stable") if "key" in table else table  # an order-free mean
        sums = np.stack(table["layer_sums"].to_numpy()).astype(np.float64)
        delta = (np.stack(table["p_full"].to_numpy()).astype(np.float64)
                 - np.stack(table["p_zero"].to_numpy()).astype(np.float64))
        return pd.DataFrame({"sum_of_scores": sums.mean(0), "p_full_minus_p_zero": delta.mean(0),
                             "mean_abs_gap": np.abs(sums - delta).mean(0)}).rename_axis("layer")

    def done_keys(self) -> set[str]:
        """Keys of the stored rows (a truncated part fails at its footer here, and is set aside before resuming)."""
        return set(self.read(columns=["key"])["key"]) if self.parts() else set()

    def _write_part(self, rows: list[dict], shard_index: int, shard_count: int) -> Path:

        name = f"part-s{shard_index:03d}of{shard_count:03d}-{uuid.uuid4().hex[:12]}.parquet"
        table = pd.DataFrame(rows, columns=list(self.PART_COLUMNS))
        return atomic_write(self.folder / name, lambda tmp: table.to_parquet(tmp, index=False))

    def compute(self, loaded, prompts, input_ids, target_ids, *, shard_index: int = 0, shard_count: int = 1,
                batch_size: int = 1, flush_every: int = 16, progress: bool = False, on_flush=None) -> dict:
        """Score every prompt of this shard that is not stored yet (one row per distinct prompt and target).

        prompts: [prompt] texts (with target_ids, they key the rows); input_ids: list of [seq] LongTensors;
        target_ids: [prompt] ints. ``batch_size`` prompts go through the kernel per call (1: every prompt's scores are
        bitwise the same whatever else is scored, so shards and resumed runs reproduce a single run). Parts are
        flushed every ``flush_every`` prompts. Returns counts, seconds, seconds per prompt (the first call, which
        warms the kernel up, excluded when there are more), torch threads and batch size."""
        import torch  # torch only where tensors are made: importing this module stays cheap


        m = self.manifest
        keys = [self.key(p, t) for p, t in zip(prompts, target_ids)]
        done = self.done_keys()
        todo, seen = [], set()
        for i, k in enumerate(keys):
            if self.shard_of(k, shard_count) == shard_index and k not in done and k not in seen:
                todo.append(i)
                seen.add(k)
        started, rows, first_call = time.perf_counter(), [], None
        bar = progress_bar(len(todo), "attribution", unit="prompt") if progress else None
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            result = attribute(loaded, [input_ids[i] for i in batch], [int(target_ids[i]) for i in batch],
                               steps=m["steps"], rule=m["rule"], dtype=m["dtype"], neuron=m["neuron"],
                               batch_prompts=batch_size)
            for j, i in enumerate(batch):
                rows.append(self._row(keys[i], prompts[i], int(target_ids[i]), result, j))
            if first_call is None:
                first_call = (time.perf_counter() - started, len(batch))
            if bar is not None:
                bar.update(len(batch))
            if len(rows) >= flush_every:
                self._write_part(rows, shard_index, shard_count)
                rows = []
                if on_flush is not None:
                    on_flush()
        if rows:
            self._write_part(rows, shard_index, shard_count)
        if bar is not None:
            bar.close()
        seconds = time.perf_counter() - started
        if first_call is not None and len(todo) > first_call[1]:
            per_prompt = (seconds - first_call[0]) / (len(todo) - first_call[1])
        else:
            per_prompt = seconds / len(todo) if todo else float("nan")
        stats = {"computed": len(todo), "already_stored": len(done & set(keys)), "seconds": seconds,
                 "seconds_per_prompt": per_prompt, "threads": torch.get_num_threads(), "batch_prompts": batch_size}
        if todo:  # how fast the stored scores were made, for a later execution that computes nothing
            self._log_compute(stats, shard_index, shard_count)
        return stats

    def _log_compute(self, stats: dict, shard_index: int, shard_count: int) -> None:
        name = f"compute-s{shard_index:03d}of{shard_count:03d}.json"
        locked_update(self.folder / name, lambda log: (log or []) + [stats], [])

    def compute_log(self) -> list[dict]:
        """Every compute() call that scored prompts (all shards): computed, seconds, seconds_per_prompt, threads,
        batch_prompts."""
        return [entry for path in sorted(self.folder.glob("compute-*.json")) for entry in json.loads(path.read_text())]

    def _row(self, key: str, prompt: str, target_id: int, result, j: int) -> dict:
        """One stored row: neurons above the store threshold, the max, per-layer sums, P(w_bar) and P(0)."""
        import torch  # torch only where tensors are made: importing this module stays cheap

        scores = result.scores[j].float()
        flat = scores.reshape(-1)
        max_score = float(flat.max())
        threshold = self.manifest["threshold"]
        kept = torch.nonzero(flat > threshold * max_score).reshape(-1) if max_score > 0 else flat.new_zeros(0).long()
        return {"key": key, "prompt": prompt, "target_id": target_id, "max_score": max_score,
                "neuron_ids": kept.numpy().astype(np.int32), "neuron_scores": flat[kept].numpy().astype(np.float32),
                "layer_sums": scores.sum(-1).numpy().astype(np.float32),
                "p_full": result.p_full[j].float().numpy(), "p_zero": result.p_zero[j].float().numpy()}


def merge_attribution_stores(sources, target: str | Path) -> Path:
    """Copy every part of the shard folders ``sources`` into ``target``; their manifests must agree."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    manifests = {json.dumps(json.loads((Path(s) / "manifest.json").read_text()), sort_keys=True) for s in sources}
    if len(manifests) != 1:
        raise ValueError(f"shard folders {list(map(str, sources))} were computed with different settings")
    manifest = manifests.pop()
    existing = target / "manifest.json"
    if existing.is_file() and json.dumps(json.loads(existing.read_text()), sort_keys=True) != manifest:
        raise ValueError(f"{target} holds scores computed with other settings")
    atomic_write_bytes(existing, manifest.encode())
    for source in sources:
        for part in sorted(Path(source).glob("part-*.parquet")):
            if not (target / part.name).exists():
                shutil.copy2(part, target / part.name)
    return target

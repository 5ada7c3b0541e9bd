"""kn.methods.land: LAND (Wu et al. 2025, "Lightweight Associated Neuron Detector").

LAND maps ONE prompt's coarse neuron set to the set its fact's paraphrases share. Sets are frozensets of flat ids
``layer * H + index`` (kn.base.neurons); the model sees them as 0/1 tensors [L, H] and outputs scores [L, H]; the LAND
set is the neurons scoring above the threshold P.

API
    LandHyperParams(rank, epochs, batch_size, lr, threshold, counterexamples, seed, counterexample_rule);
        .from_params(StudyParams)
    LandDetector(n_layers, n_neurons, rank, *, generator=None)        per-layer bilinear low rank: x [B, L, H] -> [B, L, H]
    parameter_count(n_layers, n_neurons, rank) -> int                  L * 2 * H * R
    train_land(pairs, targets, n_layers, n_neurons, hp, *, device, progress, on_epoch) -> (LandDetector, per-step losses)
    mean_loss(model, pairs, targets, *, batch_size=64) -> float   the training loss on any pairs (held-out ones)
    land_sets(model, sets, threshold, *, batch_size, device) -> [frozenset]   inference: scores > P
    topk_sets(model, sets, k, *, batch_size, device) -> {prompt_id: frozenset of exactly k ids}   the fixed-size
        read-out: each input's k highest scores (ties to the smaller id), whatever the output's scale; k an int or
        {prompt_id: int}
    ratio_size(n_coarse, ratio) -> int; ratio_sets(model, sets, ratio) -> {prompt_id: frozenset}   the paper's
        N_L / N_s read per prompt: round(ratio x |coarse set|) highest scores
    size_threshold(model, sets, mean_size, *, batch_size, device) -> float   the P at which the mean set size over
        ``sets`` is mean_size (round(mean_size * n) scores lie above it)
    save_land(model, folder, hp, meta) / load_land(folder, L, H) -> (LandDetector, hp, meta)   safetensors + json
        (files WEIGHTS_FILE, CONFIG_FILE)

Nothing is pickled; sets stay sparse until a batch is densified on the training device.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kn.base.io import atomic_write
from kn.base.progress import progress as progress_bar
from kn.methods.counterexamples import COUNTEREXAMPLE_RULES

WEIGHTS_FILE = "land.safetensors"
CONFIG_FILE = "land.json"
_TRAIN_HINT = "train LAND first: run chapter 04 (make chapter CHAPTER=04) for this model"


# --------------------------------------------------------------------------- hyper-parameters


@dataclass(frozen=True)
class LandHyperParams:
    rank: int = 64  # R
    epochs: int = 3
    batch_size: int = 8
    lr: float = 1e-4  # Adam
    threshold: float | None = None  # P, on the target's scale (how many of a fact's coarse sets hold the neuron);
    # None until chosen on validation facts (kn.methods.land.choose_threshold)
    counterexamples: int = 2  # k: counter-example prompts per prompt (same_template) or other facts per fact
    # (whole_union, all their templates); 0: none
    seed: int = 0
    counterexample_rule: str = "same_template"  # one of COUNTEREXAMPLE_RULES

    def __post_init__(self):
        for key in ("rank", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ValueError(f"LandHyperParams.{key}={getattr(self, key)!r}: must be at least 1")
        if not self.lr > 0:
            raise ValueError(f"LandHyperParams.lr={self.lr!r}: must be positive")
        if self.counterexamples < 0:
            raise ValueError(f"LandHyperParams.counterexamples={self.counterexamples!r}: must be 0 or more")
        if self.counterexample_rule not in COUNTEREXAMPLE_RULES:
            raise ValueError(f"LandHyperParams.counterexample_rule={self.counterexample_rule!r}: must be one of "
                             f"{', '.join(COUNTEREXAMPLE_RULES)}")

    @classmethod
    def from_params(cls, p) -> "LandHyperParams":
        """From a kn.base.params.StudyParams (keys land_rank, land_epochs, land_batch_size, land_lr, land_threshold,
        land_counterexamples, seed, land_counterexample_rule; the last defaults to this class's own default where the
        params predate it)."""
        return cls(rank=int(p.land_rank), epochs=int(p.land_epochs), batch_size=int(p.land_batch_size),
                   lr=float(p.land_lr),
                   threshold=None if p.land_threshold is None else float(p.land_threshold),
                   counterexamples=int(p.land_counterexamples), seed=int(p.seed),
                   counterexample_rule=str(getattr(p, "land_counterexample_rule", cls.counterexample_rule)))

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- model


def parameter_count(n_layers: int, n_neurons: int, rank: int) -> int:
    """Number of LAND parameters: per layer an encoder H x R and a decoder R x H, no bias: ``L * 2 * H * R``."""
    return int(n_layers) * 2 * int(n_neurons) * int(rank)


class LandDetector(nn.Module):
    """Per-layer bilinear low-rank map, no bias, no nonlinearity, no sharing across layers.

    ``encoder`` [L, H, R], ``decoder`` [L, R, H]; ``forward(x)[b, l] = x[b, l] @ encoder[l] @ decoder[l]``.

    Initialisation (drawn on the CPU from ``generator`` when given, so a seed fixes it on any device):
    encoder ~ N(0, 1/H), decoder ~ N(0, 1/R) (std 1/sqrt(H) and 1/sqrt(R)), so that a random input's
    code and output keep a scale independent of H and R.
    """

    def __init__(self, n_layers: int, n_neurons: int, rank: int, *, generator: torch.Generator | None = None):
        super().__init__()
        if min(n_layers, n_neurons, rank) < 1:
            raise ValueError(f"LandDetector: n_layers={n_layers}, n_neurons={n_neurons}, rank={rank} must all be >= 1")
        self.n_layers, self.n_neurons, self.rank = int(n_layers), int(n_neurons), int(rank)
        L, H, R = self.n_layers, self.n_neurons, self.rank
        enc = torch.randn(L, H, R, generator=generator, dtype=torch.float32) / math.sqrt(H)
        dec = torch.randn(L, R, H, generator=generator, dtype=torch.float32) / math.sqrt(R)
        self.encoder = nn.Parameter(enc)
        self.decoder = nn.Parameter(dec)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, L, H] (a 0/1 coarse set per row) -> scores [B, L, H]."""
        if x.dim() != 3 or x.shape[1:] != (self.n_layers, self.n_neurons):
            raise ValueError(f"LandDetector expects [B, {self.n_layers}, {self.n_neurons}], got {list(x.shape)}")
        xl = x.to(self.encoder.dtype).transpose(0, 1)  # [L, B, H]
        code = torch.bmm(xl, self.encoder)  # [L, B, R]
        return torch.bmm(code, self.decoder).transpose(0, 1)  # [B, L, H]

    def extra_repr(self) -> str:
        return f"n_layers={self.n_layers}, n_neurons={self.n_neurons}, rank={self.rank}"


# --------------------------------------------------------------------------- training and inference


class _Csr:
    """Ragged int64 ids (and optional float32 values) in one flat array with offsets."""

    def __init__(self, rows: Sequence, values: Sequence | None = None):
        arrays = [np.asarray(sorted(r) if isinstance(r, (set, frozenset)) else r, dtype=np.int64) for r in rows]
        lengths = np.array([a.size for a in arrays], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.ids = np.concatenate(arrays) if arrays else np.zeros(0, np.int64)
        self.values = (np.concatenate([np.asarray(v, dtype=np.float32) for v in values]) if values is not None
                       and len(values) else None)

    def gather(self, rows: np.ndarray):
        """(row positions in the batch, flat ids, values or None) of the rows ``rows``."""
        starts, ends = self.offsets[rows], self.offsets[rows + 1]
        lengths = ends - starts
        batch_rows = np.repeat(np.arange(rows.size, dtype=np.int64), lengths)
        take = (np.concatenate([np.arange(s, e, dtype=np.int64) for s, e in zip(starts, ends)])
                if rows.size else np.zeros(0, np.int64))
        return batch_rows, self.ids[take], (self.values[take] if self.values is not None else None)


def _dense(batch_rows, ids, values, n_rows: int, n_layers: int, n_neurons: int, device) -> torch.Tensor:
    """[n_rows, L, H] float32 on ``device``: 1 (or the value) at each (row, flat id), 0 elsewhere."""
    out = torch.zeros(n_rows, n_layers * n_neurons, dtype=torch.float32, device=device)
    if ids.size:
        r = torch.from_numpy(batch_rows).to(device)
        c = torch.from_numpy(ids).to(device)
        v = torch.from_numpy(values).to(device) if values is not None else torch.ones(ids.size, device=device)
        out[r, c] = v
    return out.view(n_rows, n_layers, n_neurons)


def _check_ids(csr: _Csr, n_total: int, what: str) -> None:
    if csr.ids.size and (csr.ids.min() < 0 or csr.ids.max() >= n_total):
        bad = int(csr.ids.max() if csr.ids.max() >= n_total else csr.ids.min())
        raise ValueError(f"{what}: neuron id {bad} outside [0, L*H={n_total})")


def train_land(pairs: Sequence, targets: Mapping, n_layers: int, n_neurons: int, hp: LandHyperParams, *,
               device="cpu", progress: bool = False, on_epoch: Callable | None = None):
    """Train LAND on (prompt coarse set -> fact target) pairs.

    pairs: [(frozenset of flat ids (one prompt's coarse set), key)], the training prompts only; key names the
        pair's target: its fact_id (:func:`build_targets`) or its prompt_id (:func:`build_prompt_targets`).
    targets: {key: (ids [k], counts [k])}.
    n_layers, n_neurons: L, H. hp: rank, epochs, batch_size, lr, seed.
    Loss: MSE between the output [B, L, H] and the dense target [B, L, H], mean over all elements; Adam.
    Determinism: one CPU torch.Generator seeded with hp.seed draws the initial weights, then each epoch's shuffle;
    batches are densified from sparse ids on ``device``. The last batch of an epoch may be smaller.
    on_epoch(epoch, model): called after each epoch (1..E) with the model in eval mode (e.g. to measure a held-out
        loss with :func:`mean_loss`); it does not touch the generator, so the training is the same with or without it.
    Returns (model in eval mode on ``device``, per-step losses [epochs * ceil(len(pairs) / batch_size)]).
    """
    if not pairs:
        raise ValueError("train_land: no training pairs")
    missing = [f for _, f in pairs if f not in targets]
    if missing:
        raise KeyError(f"train_land: {len(missing)} pair(s) name facts without a target, e.g. {missing[0]!r}")
    L, H = int(n_layers), int(n_neurons)
    device = torch.device(device)
    fact_ids = list(targets)
    fact_row = {f: i for i, f in enumerate(fact_ids)}
    inputs = _Csr([s for s, _ in pairs])
    tgt = _Csr([targets[f][0] for f in fact_ids], [targets[f][1] for f in fact_ids])
    _check_ids(inputs, L * H, "train_land input sets")
    _check_ids(tgt, L * H, "train_land targets")
    pair_fact = np.array([fact_row[f] for _, f in pairs], dtype=np.int64)

    generator = torch.Generator().manual_seed(int(hp.seed))
    model = LandDetector(L, H, hp.rank, generator=generator).to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=hp.lr)
    n, bs = len(pairs), int(hp.batch_size)
    steps_per_epoch = (n + bs - 1) // bs
    losses = torch.zeros(hp.epochs * steps_per_epoch, dtype=torch.float32, device=device)
    bar = None
    if progress:

        bar = progress_bar(hp.epochs * steps_per_epoch, "LAND training", unit="step")
    step = 0
    for epoch in range(1, hp.epochs + 1):
        order = torch.randperm(n, generator=generator).numpy()
        for start in range(0, n, bs):
            rows = order[start:start + bs]
            x = _dense(*inputs.gather(rows), rows.size, L, H, device)
            y = _dense(*tgt.gather(pair_fact[rows]), rows.size, L, H, device)
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses[step] = loss.detach()  # no host sync per step
            step += 1
            if bar is not None:
                bar.update(1)
                if step % 200 == 0:
                    bar.set_postfix(loss=float(loss.item()))
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch, model)
            model.train()
    if bar is not None:
        bar.close()
    model.eval()
    return model, losses.cpu().tolist()


@torch.no_grad()
def mean_loss(model: LandDetector, pairs: Sequence, targets: Mapping, *, batch_size: int = 64) -> float:
    """The training loss (MSE over all L x H elements) of ``model`` on (coarse set, key) pairs, averaged over the pairs;
    nan without pairs. The same quantity as train_land's per-step losses, on pairs it may not have seen."""
    if not pairs:
        return float("nan")
    L, H = model.n_layers, model.n_neurons
    device = next(model.parameters()).device
    inputs = _Csr([s for s, _ in pairs])
    keys = list(dict.fromkeys(k for _, k in pairs))
    row = {k: i for i, k in enumerate(keys)}
    tgt = _Csr([targets[k][0] for k in keys], [targets[k][1] for k in keys])
    pair_key = np.array([row[k] for _, k in pairs], dtype=np.int64)
    total = 0.0
    for start in range(0, len(pairs), batch_size):
        rows = np.arange(start, min(start + batch_size, len(pairs)))
        x = _dense(*inputs.gather(rows), rows.size, L, H, device)
        y = _dense(*tgt.gather(pair_key[rows]), rows.size, L, H, device)
        total += float(((model(x) - y) ** 2).mean(dim=(1, 2)).sum())
    return total / len(pairs)


@torch.no_grad()
def land_sets(model: LandDetector, sets: Sequence, threshold: float, *, batch_size: int = 64,
              device=None) -> list:
    """LAND sets of coarse sets: [frozenset of flat ids] -> [frozenset {ids whose output score > threshold}].

    Inputs are densified ``batch_size`` at a time into [B, L, H] on ``device`` (default: the model's device)."""
    if device is None:
        device = model.encoder.device
    L, H = model.n_layers, model.n_neurons
    csr = _Csr(list(sets))
    _check_ids(csr, L * H, "land_sets input sets")
    out = []
    for start in range(0, len(sets), batch_size):
        rows = np.arange(start, min(start + batch_size, len(sets)), dtype=np.int64)
        x = _dense(*csr.gather(rows), rows.size, L, H, device)
        scores = model(x.to(model.encoder.device)).reshape(rows.size, L * H)
        hit_rows, hit_ids = (scores > threshold).nonzero(as_tuple=True)
        hit_rows, hit_ids = hit_rows.cpu().numpy(), hit_ids.cpu().numpy()
        bounds = np.searchsorted(hit_rows, np.arange(rows.size + 1))
        out.extend(frozenset(hit_ids[bounds[i]:bounds[i + 1]].tolist()) for i in range(rows.size))
    return out


def _scores(model: LandDetector, csr: _Csr, start: int, stop: int, device) -> torch.Tensor:
    """Scores [stop - start, L * H] of the rows start..stop of ``csr`` on the model's device."""
    L, H = model.n_layers, model.n_neurons
    rows = np.arange(start, stop, dtype=np.int64)
    x = _dense(*csr.gather(rows), rows.size, L, H, device)
    return model(x.to(model.encoder.device)).reshape(rows.size, L * H)


@torch.no_grad()
def topk_sets(model: LandDetector, sets: Mapping, k, *, batch_size: int = 64, device=None) -> dict:
    """The fixed-size read-out: {prompt_id: frozenset of the k flat ids with the highest scores} for every coarse
    set of ``sets`` ({prompt_id: frozenset}). k: one int for every input, or {prompt_id: int} per input (every key of
    ``sets`` given). Unlike a threshold, it does not depend on the scale of the output (which moves with training
    length and learning rate). Ties at the k-th score go to the smaller id, so the result is deterministic on any
    device. Each k must lie in [0, L * H]."""
    L, H = model.n_layers, model.n_neurons
    keys = list(sets)
    if isinstance(k, Mapping):
        missing = [key for key in keys if key not in k]
        if missing:
            raise KeyError(f"topk_sets: no k for {len(missing)} input(s), e.g. {missing[0]!r}")
        ks = np.array([int(k[key]) for key in keys], dtype=np.int64)
    else:
        ks = np.full(len(keys), int(k), dtype=np.int64)
    if ks.size and not (0 <= ks.min() and ks.max() <= L * H):
        raise ValueError(f"topk_sets: k={int(ks.min() if ks.min() < 0 else ks.max())} must lie in [0, L*H={L * H}]")
    if device is None:
        device = model.encoder.device
    csr = _Csr([sets[key] for key in keys])
    _check_ids(csr, L * H, "topk_sets input sets")
    out = {}
    for start in range(0, len(keys), batch_size):
        stop = min(start + batch_size, len(keys))
        batch_k = torch.from_numpy(ks[start:stop]).to(device).unsqueeze(1)  # [B, 1]
        top = int(batch_k.max()) if stop > start else 0
        if top == 0:
            out.update({key: frozenset() for key in keys[start:stop]})
            continue
        scores = _scores(model, csr, start, stop, device)
        values = scores.topk(top, dim=1).values  # [B, top], descending
        kth = values.gather(1, (batch_k - 1).clamp(min=0))  # [B, 1]: each row's own k-th score
        above = scores > kth
        tied = scores == kth
        need = batch_k - above.sum(dim=1, keepdim=True)  # how many of the tied ids to take, the smallest first
        take = (above | (tied & (tied.cumsum(dim=1) <= need))) & (batch_k > 0)
        hit_rows, hit_ids = take.nonzero(as_tuple=True)
        hit_rows, hit_ids = hit_rows.cpu().numpy(), hit_ids.cpu().numpy()
        bounds = np.searchsorted(hit_rows, np.arange(stop - start + 1))
        out.update({keys[start + i]: frozenset(hit_ids[bounds[i]:bounds[i + 1]].tolist())
                    for i in range(stop - start)})
    return out


def ratio_size(n_coarse: int, ratio: float) -> int:
    """The size of a prompt's set at ``ratio`` times its coarse set: round(ratio x n), at least 1 for a non-empty
    coarse set and 0 for an empty one (LAND's N_L / N_s, read per prompt)."""
    return 0 if n_coarse <= 0 else max(1, int(round(float(ratio) * n_coarse)))


def ratio_sets(model: LandDetector, sets: Mapping, ratio: float, **kwargs) -> dict:
    """The paper's operating point, read per prompt: each input's ratio_size(|coarse set|, ratio) highest scores
    (:func:`topk_sets`). Its mean size is ratio x N_s on any prompts, held out or not, whatever the detector's scale:
    nothing is chosen on facts."""
    return topk_sets(model, sets, {key: ratio_size(len(s), ratio) for key, s in sets.items()}, **kwargs)


@torch.no_grad()
def size_threshold(model: LandDetector, sets: Sequence, mean_size: float, *, batch_size: int = 64,
                   device=None) -> float:
    """The threshold P at which LAND's sets of ``sets`` (coarse sets) hold ``mean_size`` neurons on average.

    With n inputs and m = round(mean_size * n), P is the midpoint of the m-th and (m+1)-th largest of all n * L * H
    scores, so that exactly m scores lie above it (fewer where those two tie). It is solved from the scores, not
    looked up on a grid. Only the m + 1 largest scores are kept while the batches stream by (a batch's scores below
    the smallest of them are dropped, and the rest merged in now and then: linear in the scores). m = 0 gives the largest
    score (no set holds anything); m = n * L * H gives a P below every score."""
    if not mean_size >= 0:
        raise ValueError(f"size_threshold: mean_size={mean_size!r} must be 0 or more")
    if not sets:
        raise ValueError("size_threshold: no input sets")
    L, H = model.n_layers, model.n_neurons
    if device is None:
        device = model.encoder.device
    n = len(sets)
    m = min(int(round(float(mean_size) * n)), n * L * H)
    csr = _Csr(list(sets))
    _check_ids(csr, L * H, "size_threshold input sets")
    best, lowest, pending, waiting = None, None, [], 0
    for start in range(0, n, batch_size):
        flat = _scores(model, csr, start, min(start + batch_size, n), device).reshape(-1)
        low = flat.min()
        lowest = low if lowest is None else torch.minimum(lowest, low)
        if best is not None and best.numel() == m + 1:  # full: only a score above its smallest can still enter
            flat = flat[flat > best[-1]]
        pending.append(flat)
        waiting += flat.numel()
        # merged when the kept scores are not yet m + 1, or enough wait: one top-k per batch would cost O(m) each
        if best is None or best.numel() < m + 1 or waiting >= max(m + 1, 1 << 20) or start + batch_size >= n:
            pool = torch.cat(([best] if best is not None else []) + pending)
            best = pool.topk(min(m + 1, pool.numel())).values
            pending, waiting = [], 0
    if m == 0:
        return float(best[0])
    if m >= best.numel():  # every score lies above P
        return float(lowest) - 1.0
    return float((best[m - 1] + best[m]) / 2)


# --------------------------------------------------------------------------- persistence


def save_land(model: LandDetector, folder, hp: LandHyperParams, meta: dict | None = None) -> Path:
    """Write ``folder/land.safetensors`` (encoder [L, H, R], decoder [L, R, H]) and ``folder/land.json``
    ({n_layers, n_neurons, rank, hp, meta}; meta must be JSON-serialisable), each atomically. Returns folder."""
    from safetensors.torch import save_file  # only when weights are saved or loaded

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {"encoder": model.encoder.detach().cpu().contiguous(),
               "decoder": model.decoder.detach().cpu().contiguous()}
    config = {"n_layers": model.n_layers, "n_neurons": model.n_neurons, "rank": model.rank,
              "hp": hp.as_dict(), "meta": dict(meta or {})}
    text = json.dumps(config, indent=2, sort_keys=True)
    atomic_write(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    atomic_write(folder / CONFIG_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder


def load_land(folder, n_layers: int, n_neurons: int, *, device="cpu"):
    """Read a LAND model written by :func:`save_land` for a model with ``n_layers`` x ``n_neurons`` neurons.

    Raises FileNotFoundError (saying what to run) when the folder or a file is missing, and ValueError naming the
    file and both (L, H) shapes when the stored model belongs to another architecture.
    Returns (LandDetector on ``device`` in eval mode, LandHyperParams, meta dict)."""
    from safetensors.torch import load_file  # only when weights are saved or loaded

    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: {_TRAIN_HINT}")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    stored = (int(config["n_layers"]), int(config["n_neurons"]))
    wanted = (int(n_layers), int(n_neurons))
    if stored != wanted:
        raise ValueError(f"{config_path}: LAND was trained for (L, H) = {stored}, but this model has (L, H) = "
                         f"{wanted}; {_TRAIN_HINT}")
    rank = int(config["rank"])
    tensors = load_file(str(weights_path))
    expected = {"encoder": (stored[0], stored[1], rank), "decoder": (stored[0], rank, stored[1])}
    for name, shape in expected.items():
        if name not in tensors or tuple(tensors[name].shape) != shape:
            got = tuple(tensors[name].shape) if name in tensors else "missing"
            raise ValueError(f"{weights_path}: tensor {name!r} has shape {got}, expected {shape} from {config_path}")
    model = LandDetector(stored[0], stored[1], rank, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.encoder.copy_(tensors["encoder"])
        model.decoder.copy_(tensors["decoder"])
    model = model.to(device).eval()
    # detectors saved before counter-example rules existed were trained on whole-union targets
    hp = {"counterexample_rule": "whole_union", **config["hp"]}
    return model, LandHyperParams(**hp), config.get("meta", {})

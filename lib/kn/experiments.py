"""kn.experiments: the amplification and editing experiments of chapters 5 and 6, on one shared test design.

Prompts are named by ``prompt_id`` (kn.pararel.prompt_id); sets are frozensets of flat neuron ids (kn.neurons).

API
    METHODS            identified-set methods, key -> display name, in table order
    CONDITIONS         "Same", "Related", "Unrelated" -> the design's prompt column
    random_name(key) -> "Random (LAND)";  method_names() -> every display name incl. the random controls
    design_conditions(prompts, *, seed, unrelated="other_relation", related_templates=1, unrelated_partners=1,
                      objects=None) -> DataFrame, one row per test fact (see its docstring for the columns)
    condition_prompts(design row) -> {condition: [prompt_id]}   the probes of each condition
    refine_p_on_train(prompts, sets, *, p0, step, lo, hi, seed, held_out=1) -> {relation: p}   Knowledge-Neurons p
        chosen on TRAIN facts with as many templates dropped as the test facts hold out
    PRIMARY; store_scores(store, ident) -> {prompt_id: {neuron: score}}; top_k_by_score(set, scores, k) -> frozenset
    matched_size_sets(design, sets, ident_scores, sizes) -> {k: {key: {fact_id: frozenset}}}   the same k for all
    matched_random(neurons, n_neurons, rng) -> frozenset   as many neurons per layer, drawn among the layer's others
    method_sets(design, prompts, per_prompt, *, refine_sets, p_by_relation, n_layers, n_neurons, seed)
        -> {method key: {fact_id: frozenset}}, with "random_<key>" beside every method
    prepare_interventions(run, params, loaded) -> InterventionSetup   (chapters 5 and 6's one set-up call)
    amplification_experiment(setup, factors, *, batch_size) -> DataFrame, one row per probe (condition, method,
        action, fact_id, relation, prompt_id, p_before, p_after, change_rate, log_ratio)
    per_fact(results, value) -> the mean of value over each fact's probes (the unit of every interval)
    change_rate_table(results, action, *, n_boot, seed) -> DataFrame [method x condition] of kn.stats.Interval
    paired_comparisons(per_fact, value, pairs, *, n_boot, seed) -> DataFrame of cluster-bootstrap intervals and
        sentences
    statement_pools(prompts, size, seed) -> {relation: [prompt_id]}     perplexity statements ("prompt answer")
    fact_update_experiment(setup, params) -> DataFrame, one row per (fact, method incl. "Before" and the variants)
    variant_name(key, variant) -> "LAND, top 5"
    relation_erasing_experiment(setup, params) -> DataFrame, one row per (relation, erased set)
    new_targets(objects, prompts, design, *, seed) -> {fact_id: (object, first token id)}   t' of each edit

Decisions (the methods page states them): per test fact, related_templates seeded templates are held out and are the
Related prompts; another seeded template identifies the neurons and is the Same prompt; Unrelated tests on the
identification prompts of unrelated_partners other test facts (from another relation by default) whose relation's
objects share none with the fact's (another answer type) and whose answer is not the edit's t'. Baseline, LAND, the
relation prior and the nearest neighbour use the identification prompt's sets; KN-refined refines the fact's sets of
every template but the held-out ones, with a p chosen per relation by Dai et al.'s rule on the train facts' sets with as
many seeded templates dropped. No method has seen a Related prompt. Each method has its own random control with the
same number of neurons in every layer; the matched-size edits give every primary method the same k neurons.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import editing, neurons
from .interventions import answer_probabilities, change_rate
from .progress import track
from .stats import cluster_bootstrap_mean, cluster_paired_difference, compare

__all__ = ["METHODS", "CONDITIONS", "random_name", "method_names", "design_conditions", "refine_p_on_train",
           "matched_random", "method_sets", "InterventionSetup", "prepare_interventions", "amplification_experiment",
           "change_rate_table", "paired_comparisons", "statement_pools", "fact_update_experiment",
           "relation_erasing_experiment", "new_targets"]

METHODS = {
    "baseline": "Baseline",
    "kn_refined": "KN-refined",
    "land": "LAND",
    "relation_prior": "Relation prior",
    "nearest_neighbour": "Nearest neighbour",
    "constant": "Constant",
}
CONDITIONS = {"Same": "same_prompt", "Related": "related_prompt", "Unrelated": "unrelated_prompt"}
UNRELATED_CHOICES = ("other_relation", "same_relation", "any")


def random_name(key: str) -> str:
    return f"Random ({METHODS[key]})"


def method_names() -> list[str]:
    """Display names in table order: each method followed by its random control."""
    return [name for key in METHODS for name in (METHODS[key], random_name(key))]


def _name(key: str) -> str:
    return random_name(key.removeprefix("random_")) if key.startswith("random_") else METHODS[key]


def _rng(seed: int, *parts) -> np.random.Generator:
    return np.random.default_rng([seed] + [zlib.crc32(str(p).encode()) for p in parts])


# --------------------------------------------------------------------------- design


def design_conditions(prompts: pd.DataFrame, *, seed: int = 0, unrelated: str = "other_relation",
                      related_templates: int = 1, unrelated_partners: int = 1,
                      objects: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per test fact with >= 2 templates. prompts: columns prompt_id, fact_id, relation, template_position,
    split (and target_id, answer when ``objects`` is given). Seeded per fact, so the design does not depend on the
    table's row order.

    Per fact: one identification template (the Same prompt) and ``related_templates`` held-out templates (the Related
    prompts; fewer when the fact has fewer templates); ``unrelated_partners`` other test facts whose identification
    prompts are the Unrelated prompts. With ``objects`` (chapter 1's objects table) the fact's edit target t' is drawn
    (new_object, new_target_id, as new_targets does), and partners are kept only when their relation's objects share
    none with the fact's relation (an answer of another type) and their own answer is not t'; where no such partner
    exists the pairing rule alone decides (unrelated_typed False).
    Columns: fact_id, relation, ident_position, held_out_positions, same_prompt, related_prompts, related_prompt (the
    first), unrelated_facts, unrelated_prompts, unrelated_fact, unrelated_prompt (the first), unrelated_typed."""
    if unrelated not in UNRELATED_CHOICES:
        raise ValueError(f"unrelated={unrelated!r}: use one of {UNRELATED_CHOICES}")
    if related_templates < 1 or unrelated_partners < 1:
        raise ValueError("related_templates and unrelated_partners must be at least 1")
    test = prompts[prompts["split"] == "test"]
    rows = []
    for fact_id, group in test.groupby("fact_id", sort=True):
        positions = sorted(int(t) for t in group["template_position"])
        if len(positions) < 2:
            continue
        k = min(related_templates, len(positions) - 1)
        drawn = _rng(seed, "design", fact_id).choice(positions, size=k + 1, replace=False)
        ident, held_out = int(drawn[1]), sorted(int(x) for x in [drawn[0], *drawn[2:]])
        at = dict(zip(group["template_position"].astype(int), group["prompt_id"]))
        related = [at[p] for p in held_out]
        rows.append({"fact_id": fact_id, "relation": group["relation"].iloc[0], "ident_position": ident,
                     "held_out_positions": held_out, "same_prompt": at[ident], "related_prompts": related,
                     "related_prompt": related[0]})
    design = pd.DataFrame(rows)
    if design.empty:
        raise ValueError("no test fact has two templates: the run needs test facts (test_facts_per_relation)")
    typed_objects, answer_of = {}, {}
    if objects is not None:
        targets = new_targets(objects, prompts, design, seed=seed)
        design["new_object"] = [targets[f][0] for f in design["fact_id"]]
        design["new_target_id"] = [targets[f][1] for f in design["fact_id"]]
        typed_objects = {r: set(g["object"]) for r, g in objects.groupby("relation")}
        answer_of = dict(zip(test["fact_id"], test["target_id"]))
    picked, typed = [], []
    for row in design.itertuples():
        pool = design[design["fact_id"] != row.fact_id]
        if unrelated == "other_relation":
            pool = pool[pool["relation"] != row.relation]
        elif unrelated == "same_relation":
            pool = pool[pool["relation"] == row.relation]
        if pool.empty:
            raise ValueError(f"fact {row.fact_id}: no other test fact for unrelated={unrelated!r}")
        strict = pool
        if objects is not None:
            own = typed_objects.get(row.relation, set())
            strict = pool[[not (typed_objects.get(r, set()) & own) and answer_of[f] != row.new_target_id
                           for r, f in zip(pool["relation"], pool["fact_id"])]]
        use = strict if len(strict) else pool
        order = _rng(seed, "unrelated", row.fact_id).permutation(len(use))[: min(unrelated_partners, len(use))]
        picked.append(use.iloc[np.sort(order)])
        typed.append(bool(len(strict)) and objects is not None)
    design["unrelated_facts"] = [list(p["fact_id"]) for p in picked]
    design["unrelated_prompts"] = [list(p["same_prompt"]) for p in picked]
    design["unrelated_fact"] = [p["fact_id"].iloc[0] for p in picked]
    design["unrelated_prompt"] = [p["same_prompt"].iloc[0] for p in picked]
    design["unrelated_typed"] = typed
    return design


def condition_prompts(row) -> dict[str, list[str]]:
    """{condition: the prompt_ids that test it} for one design row."""
    return {"Same": [row.same_prompt], "Related": list(row.related_prompts), "Unrelated": list(row.unrelated_prompts)}


def refine_p_on_train(prompts: pd.DataFrame, sets: dict, *, p0: float, step: float, lo: float, hi: float,
                      seed: int, held_out: int = 1) -> dict:
    """Dai et al.'s per-relation p for refining on the sets a test fact has, chosen on the TRAIN facts: each train
    fact drops ``held_out`` seeded templates (as each test fact holds out its Related ones), then
    kn.neurons.refine_relation. sets: {prompt_id: coarse set at refine_threshold}. Returns {relation: p}."""
    train = prompts[prompts["split"] == "train"]
    out = {}
    for relation, group in train.groupby("relation", sort=True):
        by_fact = {}
        for fact, rows in group.groupby("fact_id", sort=True):
            rows = rows.sort_values("template_position")
            k = min(held_out, len(rows) - 1)
            drop = set(int(i) for i in _rng(seed, "refine-drop", fact).choice(len(rows), size=k, replace=False))
            by_fact[fact] = [sets[p] for i, p in enumerate(rows["prompt_id"]) if i not in drop]
        _, out[relation] = neurons.refine_relation(by_fact, p0=p0, step=step, lo=lo, hi=hi)
    return out


def matched_random(neurons_set: frozenset, n_neurons: int, rng: np.random.Generator) -> frozenset:
    """The random control of a set: in every layer, as many neurons as the set has there, drawn uniformly among that
    layer's neurons outside the set (among all of the layer's neurons when fewer than that lie outside). Effects grow
    with the number of neurons touched and differ by layer, so a control of the same size in other layers would not
    control for the set."""
    by_layer: dict[int, set] = {}
    for flat in neurons_set:
        layer, index = divmod(int(flat), n_neurons)
        by_layer.setdefault(layer, set()).add(index)
    out = []
    for layer in sorted(by_layer):
        taken = by_layer[layer]
        pool = np.setdiff1d(np.arange(n_neurons), np.fromiter(taken, dtype=np.int64))
        if len(pool) < len(taken):
            pool = np.arange(n_neurons)
        out.extend(layer * n_neurons + int(i) for i in rng.choice(pool, size=len(taken), replace=False))
    return frozenset(out)


def method_sets(design: pd.DataFrame, prompts: pd.DataFrame, per_prompt: dict, *, refine_sets: dict,
                p_by_relation: dict, n_layers: int, n_neurons: int, seed: int = 0) -> dict[str, dict]:
    """The set each method identifies for each designed fact, and each method's random control.

    per_prompt: {"baseline": coarse sets, "land": ..., "relation_prior": ..., "nearest_neighbour": ...} each
        {prompt_id: frozenset} (the identification prompt's set is taken), and "constant": one frozenset.
    refine_sets: {prompt_id: coarse set at refine_threshold}, refined over the fact's templates but the held-out one
        with p_by_relation[relation].
    Returns {key: {fact_id: frozenset}} for every key of METHODS present, plus "random_<key>" for each."""
    by_fact = {f: g for f, g in prompts.groupby("fact_id")}
    out: dict[str, dict] = {}
    for key in METHODS:
        if key != "kn_refined" and key not in per_prompt:
            continue
        out[key] = {}
        for row in design.itertuples():
            if key == "kn_refined":
                group = by_fact[row.fact_id]
                seen = group[~group["template_position"].isin(row.held_out_positions)]["prompt_id"]
                chosen = neurons.refine_fact([refine_sets[p] for p in seen], p_by_relation[row.relation])
            elif key == "constant":
                chosen = frozenset(per_prompt["constant"])
            else:
                chosen = per_prompt[key][row.same_prompt]
            out[key][row.fact_id] = frozenset(chosen)
    for key in list(out):
        out[f"random_{key}"] = {f: matched_random(s, n_neurons, _rng(seed, "random", key, f)) for f, s in out[key].items()}
    for key, sets in out.items():
        for fact, s in sets.items():
            if s and max(s) >= n_layers * n_neurons:
                raise ValueError(f"{key}, {fact}: neuron id {max(s)} outside the model's {n_layers} x {n_neurons}")
    return out


PRIMARY = ("baseline", "kn_refined", "land")  # the methods the papers compare; the matched-size edits use these


def store_scores(store, ident: pd.DataFrame) -> dict:
    """{prompt_id: {flat neuron id: attribution score}} of the stored scores of ``ident``'s prompts (index
    prompt_id; columns prompt, target_id). Neurons below the store threshold count as 0 where used."""
    table = store.read(columns=["key", "neuron_ids", "neuron_scores"]).set_index("key")
    out = {}
    for pid, key in zip(ident.index, store.keys_for(ident)):
        row = table.loc[key]
        out[pid] = dict(zip((int(i) for i in row["neuron_ids"]), (float(v) for v in row["neuron_scores"])))
    return out


def top_k_by_score(neurons_set: frozenset, scores: dict, k: int) -> frozenset:
    """The k neurons of ``neurons_set`` with the highest attribution scores (ties by id; all of them when fewer)."""
    ranked = sorted(neurons_set, key=lambda n: (-scores.get(int(n), 0.0), int(n)))
    return frozenset(ranked[:k])


def matched_size_sets(design: pd.DataFrame, sets: dict, ident_scores: dict, sizes) -> dict:
    """{k: {method key: {fact_id: top-k of the method's set by the identification prompt's scores}}} for the primary
    methods: the same number of neurons for every method (fewer only where a set holds fewer), so an edit compares
    methods, not sizes."""
    out = {}
    for k in sizes:
        out[int(k)] = {key: {row.fact_id: top_k_by_score(sets[key][row.fact_id], ident_scores[row.same_prompt], int(k))
                             for row in design.itertuples()} for key in PRIMARY if key in sets}
    return out


# --------------------------------------------------------------------------- shared set-up


@dataclass
class InterventionSetup:
    """What chapters 5 and 6 share. prompts: the run's prompt table indexed by prompt_id; design: one row per test
    fact; sets: {method key: {fact_id: frozenset}} (with the random controls); input_ids: {prompt_id: [seq]
    LongTensor}; p_by_relation: the nine-set refining p; refined_by_relation: chapter 3's refined sets per relation;
    loaded: kn.models.LoadedModel (None if not loaded)."""

    prompts: pd.DataFrame
    design: pd.DataFrame
    sets: dict
    input_ids: dict
    p_by_relation: dict
    n_layers: int
    n_neurons: int
    refined_by_relation: dict  # {relation: [refined sets of its facts]} (chapter 3), for erasing
    objects: pd.DataFrame  # every object of the run's relations with its first token (chapter 1), for t'
    loaded: object = None
    matched: dict = None  # {k: {method key: {fact_id: frozenset}}}: each primary method's top-k neurons by attribution
    land_size: int = 1  # LAND's mean set size, rounded: one of the matched sizes

    def set_sizes(self) -> pd.Series:
        """Mean set size per method (display names)."""
        return pd.Series({_name(k): float(np.mean([len(s) for s in v.values()])) for k, v in self.sets.items()})


def prepare_interventions(run, params, loaded=None) -> InterventionSetup:
    """Read chapters 1-4's outputs from ``run`` (kn.store.RunFolder) and build the test design and every method's sets.
    loaded: the model (its tokenizer makes input_ids); None leaves input_ids empty (for tests of the design)."""
    from .store import AttributionStore

    prompts = run.read_table("prompts", chapter="chapter 1 (01_data_adaptation)")
    store = AttributionStore.open(run.path / "attribution")
    L, H = store.manifest["n_layers"], store.manifest["n_neurons"]
    coarse = store.coarse_sets_by_prompt(prompts, params.coarse_threshold)
    refine_sets = store.coarse_sets_by_prompt(prompts, params.refine_threshold)
    detector = run.read_table("detector_sets", chapter="chapter 4 (04_land)")
    per_prompt = {"baseline": coarse}
    for key, group in detector.groupby("method"):
        per_prompt[key] = {p: frozenset(int(i) for i in ids) for p, ids in zip(group["prompt_id"], group["neuron_ids"])}
    per_prompt["constant"] = frozenset(run.read_json("constant_set", chapter="chapter 4 (04_land)")["neuron_ids"])
    lo, hi = params.refine_size_range
    p_by_relation = refine_p_on_train(prompts, refine_sets, p0=params.refine_p_start, step=params.refine_p_step,
                                      lo=lo, hi=hi, seed=params.seed, held_out=params.related_templates)
    objects = run.read_table("objects", chapter="chapter 1 (01_data_adaptation)")
    design = design_conditions(prompts, seed=params.seed, unrelated=params.unrelated_pairing,
                               related_templates=params.related_templates,
                               unrelated_partners=params.unrelated_partners, objects=objects)
    sets = method_sets(design, prompts, per_prompt, refine_sets=refine_sets, p_by_relation=p_by_relation,
                       n_layers=L, n_neurons=H, seed=params.seed)
    ident_scores = store_scores(store, prompts.set_index("prompt_id").loc[design["same_prompt"]])
    land_size = max(1, int(round(np.mean([len(x) for x in sets["land"].values()])))) if "land" in sets else 1
    sizes = sorted(set(params.edit_matched_sizes) | {land_size})
    matched = matched_size_sets(design, sets, ident_scores, sizes)
    refined = run.read_table("refined_sets", chapter="chapter 3 (03_overlap)")
    refined_by_relation = {r: [frozenset(int(i) for i in ids) for ids in g["neuron_ids"]]
                           for r, g in refined.groupby("relation", sort=True)}
    input_ids = {}
    if loaded is not None:
        from .scoring import tokenize_prompts

        input_ids = dict(zip(prompts["prompt_id"], tokenize_prompts(loaded.tokenizer, prompts["prompt"])))
    return InterventionSetup(prompts.set_index("prompt_id", drop=False), design, sets, input_ids, p_by_relation, L, H,
                             refined_by_relation, objects, loaded, matched, land_size)


# --------------------------------------------------------------------------- amplification


def amplification_experiment(setup: InterventionSetup, factors: dict, *, batch_size: int = 32,
                             progress: bool = False) -> pd.DataFrame:
    """Scale every method's neurons by each factor ({action: factor}) on each condition's prompt of every designed
    fact. Returns one row per (condition, method, action, fact): p_before, p_after, change_rate."""
    records = []
    design = setup.design
    probes = [(row.fact_id, row.relation, c, p) for row in design.itertuples()
              for c, ps in condition_prompts(row).items() for p in ps]
    steps = [(c, k, a) for c in CONDITIONS for k in setup.sets for a in factors]
    for condition, key, action in (track(steps, len(steps), "amplification", "run") if progress else steps):
        rows = [r for r in probes if r[2] == condition]
        ids = [setup.input_ids[r[3]] for r in rows]
        targets = setup.prompts.loc[[r[3] for r in rows], "target_id"].tolist()
        neuron_sets = [setup.sets[key][r[0]] for r in rows]
        before, after = answer_probabilities(setup.loaded, ids, targets, neuron_sets, factors[action],
                                             batch_size=batch_size)
        for (fact, relation, _, prompt_id), b, a in zip(rows, before, after):
            records.append({"condition": condition, "method": _name(key), "action": action, "fact_id": fact,
                            "relation": relation, "prompt_id": prompt_id, "p_before": b, "p_after": a})
    results = pd.DataFrame(records)
    results["change_rate"] = change_rate(results["p_before"].to_numpy(), results["p_after"].to_numpy())
    with np.errstate(divide="ignore"):
        results["log_ratio"] = np.log(results["p_after"].to_numpy()) - np.log(results["p_before"].to_numpy())
    return results


def per_fact(results: pd.DataFrame, value: str) -> pd.DataFrame:
    """The mean of ``value`` over each fact's probes, per (condition, method, action where present): one row per fact,
    the unit every interval resamples (with its relation, the cluster)."""
    keys = [c for c in ("condition", "method", "action") if c in results] + ["fact_id", "relation"]
    return results.groupby(keys, sort=False, as_index=False)[value].mean()


def change_rate_table(results: pd.DataFrame, action: str, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] of kn.stats.Interval (mean change rate over facts, each fact's probes averaged first,
    with its cluster-bootstrap interval over relations then facts; the median rides along) for one action, methods in
    method_names() order."""
    part = per_fact(results[results["action"] == action], "change_rate")
    table = {}
    for (method, condition), group in part.groupby(["method", "condition"]):
        table.setdefault(method, {})[condition] = cluster_bootstrap_mean(group["change_rate"].to_numpy(),
                                                                         group["relation"].to_numpy(), n_boot=n_boot,
                                                                         seed=seed)
    order = [m for m in method_names() if m in table]
    return pd.DataFrame.from_dict(table, orient="index").loc[order, list(CONDITIONS)]


def paired_comparisons(per_fact: pd.DataFrame, value: str, pairs, *, n_boot: int, seed: int, fmt: str = "{:.2f}",
                       by: str = "condition") -> pd.DataFrame:
    """Paired differences between methods over facts.

    per_fact: long rows with columns method, fact_id, relation, ``by`` and ``value`` (a fact's several rows are
    averaged); pairs: [(method A, method B)] display names. Returns one row per (by, A, B): the Interval of
    mean(A - B) over the facts both have, resampled by relation then fact, and its sentence (kn.stats.compare)."""
    rows = []
    for level, part in per_fact.groupby(by, sort=False):
        wide = part.pivot_table(index="fact_id", columns="method", values=value, aggfunc="mean")
        relation_of = dict(zip(part["fact_id"], part["relation"])) if "relation" in part else {}
        clusters = np.array([relation_of.get(f, f) for f in wide.index])
        for a, b in pairs:
            if a not in wide or b not in wide:
                continue
            interval = cluster_paired_difference(wide[a].to_numpy(float), wide[b].to_numpy(float), clusters,
                                                 n_boot=n_boot, seed=seed)
            rows.append({by: level, "A": a, "B": b, "difference": interval,
                         "sentence": f"{level}: " + compare(a, b, interval, fmt=fmt)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- editing


def new_targets(objects: pd.DataFrame, prompts: pd.DataFrame, design: pd.DataFrame, *, seed: int = 0) -> dict:
    """For each designed fact, t': a seeded other object of its relation whose first token differs from the answer's.

    objects: the relation's candidate objects, columns relation, object, target_id (chapter 1's objects table: every
    object of the relation in the data, not only the run's facts, which may all share one answer); prompts: the run's
    rows (the answer of each fact). Returns {fact_id: (object, first token id)}."""
    objects = objects.drop_duplicates(["relation", "object"])[["relation", "object", "target_id"]]
    answers = prompts.drop_duplicates("fact_id").set_index("fact_id")
    out = {}
    for row in design.itertuples():
        own = answers.loc[row.fact_id]
        pool = objects[(objects["relation"] == row.relation) & (objects["target_id"] != own["target_id"])]
        if pool.empty:
            raise ValueError(f"fact {row.fact_id}: its relation has no other object to edit towards")
        pick = pool.sort_values("object").iloc[int(_rng(seed, "new_target", row.fact_id).integers(len(pool)))]
        out[row.fact_id] = (pick["object"], int(pick["target_id"]))
    return out


def statement_pools(prompts: pd.DataFrame, size: int, seed: int) -> dict:
    """Per relation, a seeded sample of at most ``size`` prompt_ids whose statement (prompt + answer) measures
    perplexity."""
    return {r: g.sample(n=min(size, len(g)), random_state=seed)["prompt_id"].tolist()
            for r, g in prompts.groupby("relation", sort=True)}


class _Statements:
    """Perplexity of statement groups: tokenised once, groups per fact (within its relation, across the others)."""

    def __init__(self, setup: InterventionSetup, size: int, seed: int, batch_size: int):
        from .scoring import tokenize_prompts

        prompts = setup.prompts
        self.loaded, self.batch_size = setup.loaded, batch_size
        self.pools = statement_pools(prompts, size, seed)
        texts = prompts["prompt"] + prompts["answer"]
        self.ids = dict(zip(prompts["prompt_id"], tokenize_prompts(setup.loaded.tokenizer, texts)))
        self.fact_of = dict(zip(prompts["prompt_id"], prompts["fact_id"]))
        self.size, self.seed = size, seed

    def groups(self, fact: str, relation: str) -> tuple[list, list]:
        within = [p for p in self.pools[relation] if self.fact_of[p] != fact]
        others = sorted(p for r, pool in self.pools.items() if r != relation for p in pool)
        rng = _rng(self.seed, "across", fact)
        across = [others[i] for i in np.sort(rng.permutation(len(others))[: self.size])]
        return within, across

    def perplexity(self, prompt_ids: list) -> float:
        if not prompt_ids:
            return float("nan")
        return editing.perplexity(self.loaded, [self.ids[p] for p in prompt_ids], batch_size=self.batch_size)


def variant_name(key: str, variant: str) -> str:
    """The display name of a method's edit variant: "LAND, top 5" (matched size), "LAND, scaled λ" (Dai's rule)."""
    return f"{METHODS[key]}, {variant}"


def fact_update_experiment(setup: InterventionSetup, params, *, progress: bool = False) -> pd.DataFrame:
    """Edit every designed fact towards t' (the design's new_target_id) with each method's set (LAND Eq. 7, undone
    after each), and measure on every probe of each condition whether the top-1 token is t' and whether it moved.

    Returns one row per (fact, method): success_<condition> and changed_<condition> as the share of the condition's
    probes (Same 1, Related related_templates, Unrelated unrelated_partners), outcomes_<condition> the 0/1 outcome of
    each probe in the design's order (paired across methods for McNemar's test), and ppl_within / ppl_across
    (perplexity of statements of the fact's relation, the fact's own excluded, and of other relations) with their
    _change and _relative against "Before" (the unedited row). Variants beside the papers' sets, without perplexity:
    each primary method's top-k neurons for every matched size ("LAND, top 5") and the other lambda rule
    ("LAND, scaled λ" when edit_scaled is off, "LAND, unscaled λ" when on). The weights' checksum is compared with
    the original after every edit (ValueError if not)."""
    from .scoring import next_token_scores

    loaded, design, prompts = setup.loaded, setup.design, setup.prompts
    statements = _Statements(setup, params.ppl_statements, params.seed, params.eval_batch_size)
    checksum = editing.weights_checksum(loaded.model)
    other_rule = "unscaled λ" if params.edit_scaled else "scaled λ"
    edits = [(key, _name(key), setup.sets[key], params.edit_scaled, True) for key in setup.sets]
    for k, by_key in sorted((setup.matched or {}).items()):
        edits += [(key, variant_name(key, f"top {k}"), sets, params.edit_scaled, False) for key, sets in by_key.items()]
    edits += [(key, variant_name(key, other_rule), setup.sets[key], not params.edit_scaled, False)
              for key in PRIMARY if key in setup.sets]

    def top1(prompt_ids):
        ids = [setup.input_ids[p] for p in prompt_ids]
        return next_token_scores(loaded, ids, [0] * len(ids), batch_size=params.eval_batch_size)["top1_id"].to_numpy()

    def outcomes(after, before, spans, new_token):
        out = {}
        for c, (lo, hi) in spans.items():
            hit = [int(t == new_token) for t in after[lo:hi]]
            out |= {f"outcomes_{c}": hit, f"success_{c}": float(np.mean(hit)),
                    f"changed_{c}": float(np.mean(after[lo:hi] != before[lo:hi]))}
        return out

    records = []
    rows = list(design.itertuples())
    for row in (track(rows, len(rows), "fact updates", "fact") if progress else rows):
        new_token = int(row.new_target_id)
        old_token = int(prompts.loc[row.same_prompt, "target_id"])
        by_condition = condition_prompts(row)
        probes, spans = [], {}
        for c, ps in by_condition.items():
            spans[c] = (len(probes), len(probes) + len(ps))
            probes += ps
        within, across = statements.groups(row.fact_id, row.relation)
        base = {"fact_id": row.fact_id, "relation": row.relation, "new_object": row.new_object}
        before = top1(probes)
        records.append(base | {"method": "Before", "variant": "before", "ppl_within": statements.perplexity(within),
                               "ppl_across": statements.perplexity(across)} | outcomes(before, before, spans, new_token))
        for key, name, sets, scaled, with_ppl in edits:
            with editing.update_fact(loaded, sets[row.fact_id], old_token, new_token, lambda1=params.edit_lambda1,
                                     lambda2=params.edit_lambda2, scaled=scaled):
                after = top1(probes)
                ppl = ({"ppl_within": statements.perplexity(within), "ppl_across": statements.perplexity(across)}
                       if with_ppl else {"ppl_within": np.nan, "ppl_across": np.nan})
            records.append(base | {"method": name, "variant": "paper" if with_ppl else name.split(", ", 1)[1]} | ppl
                           | outcomes(after, before, spans, new_token))
    if editing.weights_checksum(loaded.model) != checksum:
        raise ValueError("an edit was not undone: the weights differ from the original")
    edits_table = pd.DataFrame(records)
    before_ppl = edits_table[edits_table["method"] == "Before"].set_index("fact_id")[["ppl_within", "ppl_across"]]
    for column in ("ppl_within", "ppl_across"):
        reference = edits_table["fact_id"].map(before_ppl[column])
        edits_table[f"{column}_change"] = edits_table[column] - reference
        edits_table[f"{column}_relative"] = edits_table[column] / reference - 1
    return edits_table


def relation_erasing_experiment(setup: InterventionSetup, params, *, progress: bool = False) -> pd.DataFrame:
    """Dai et al.'s erasing: for each relation, zero the value vectors of the erase_top_k neurons most common among its
    facts' refined sets (setup.refined_by_relation), and, as its control, of as many random neurons per layer; measure
    the perplexity of every relation's statements. Returns one row per (relation, erased): neurons, ppl_before,
    ppl_after and the relative change for the erased relation and the mean over the others."""
    refined_by_relation = setup.refined_by_relation
    statements = _Statements(setup, params.ppl_statements, params.seed, params.eval_batch_size)
    base = {r: statements.perplexity(p) for r, p in statements.pools.items()}
    checksum = editing.weights_checksum(setup.loaded.model)
    rows = []
    relations = sorted(refined_by_relation)
    for relation in (track(relations, len(relations), "erasing", "relation") if progress else relations):
        erased = editing.most_common_neurons(refined_by_relation[relation], params.erase_top_k)
        control = matched_random(erased, setup.n_neurons, _rng(params.seed, "erase", relation))
        for what, chosen in (("refined neurons", erased), ("random neurons (matched)", control)):
            with editing.erase_neurons(setup.loaded, chosen):
                after = {r: statements.perplexity(p) for r, p in statements.pools.items()}
            others = [after[r] / base[r] - 1 for r in base if r != relation]
            rows.append({"relation": relation, "erased": what, "neurons": len(chosen), "ppl_before": base[relation],
                         "ppl_after": after[relation], "change_erased_relation": after[relation] / base[relation] - 1,
                         "change_other_relations": float(np.mean(others)) if others else float("nan")})
    if editing.weights_checksum(setup.loaded.model) != checksum:
        raise ValueError("an erasure was not undone: the weights differ from the original")
    return pd.DataFrame(rows)

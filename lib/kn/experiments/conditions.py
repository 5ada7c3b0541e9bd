"""kn.experiments.conditions: the amplification and editing experiments of chapters 5 and 6, on one shared test design.

Prompts are named by ``prompt_id`` (kn.data.pararel.prompt_id); sets are frozensets of flat neuron ids (kn.base.neurons).

API
    new_targets(objects, prompts, design, *, seed) -> {fact_id: (object, first token id)}   t' of each edit
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
    method_sets(design, prompts, per_prompt, *, refine_sets, p_by_relation, n_layers, n_neurons, seed)
        -> {method key: {fact_id: frozenset}}, with "random_<key>" beside every method
    EditSettings(...); EditSettings.from_params(params)   chapters 5 and 6's slice of StudyParams (at the edge)
    prepare_interventions(run, settings, loaded) -> InterventionSetup   (chapters 5 and 6's one set-up call)

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

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from kn.attribution.store import AttributionStore
from kn.base import neurons
from kn.base.neurons import matched_random
from kn.core.scoring import tokenize_prompts

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
    prompts are the Unrelated prompts (other_relation: of another cluster, kn.data.clusters; in a run of one cluster,
    of another relation and never the fact's twin, the same subject-object pair). With ``objects`` (chapter 1's objects table) the fact's edit target t' is drawn
    (new_object, new_target_id, as new_targets does), and partners are kept only when their relation's objects share
    none with the fact's relation (an answer of another type) and their own answer is not t'; where no such partner
    exists the pairing rule alone decides (unrelated_typed False).
    Columns: fact_id, relation, cluster (prompts' cluster column, else the relation), ident_position, held_out_positions, same_prompt, related_prompts, related_prompt (the
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
        cluster = group["cluster"].iloc[0] if "cluster" in group else group["relation"].iloc[0]
        rows.append({"fact_id": fact_id, "relation": group["relation"].iloc[0], "cluster": cluster,
                     "ident_position": ident,
                     "held_out_positions": held_out, "same_prompt": at[ident], "related_prompts": related,
                     "related_prompt": related[0]})
    design = pd.DataFrame(rows)
    if design.empty:
        raise ValueError("no test fact has two templates: the run needs test facts (test_facts_per_relation)")
    pair_of = (dict(zip(test["fact_id"], zip(test["subject"], test["object"])))
               if {"subject", "object"} <= set(test.columns) else {})
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
        if unrelated == "other_relation":  # another cluster: a relation that shares prompts is not unrelated
            other = pool[pool["cluster"] != row.cluster]
            # a run of one cluster (the smoke slice): other relations, never the fact's own twin (same pair)
            not_twin = np.array([pair_of.get(f) != pair_of.get(row.fact_id) for f in pool["fact_id"]], dtype=bool)
            pool = other if len(other) else pool[(pool["relation"] != row.relation).to_numpy() & not_twin]
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
    kn.base.neurons.refine_relation. sets: {prompt_id: coarse set at refine_threshold}. Returns {relation: p}."""
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


@dataclass(frozen=True)
class EditSettings:
    """Chapters 5 and 6's slice of the study's parameters (the keys of kn.base.params.StudyParams of the same names),
    built at the edge (the chapter's notebook): ``EditSettings.from_params(cfg)``."""
    seed: int = 0
    coarse_threshold: float = 0.2
    refine_threshold: float = 0.2
    refine_size_range: tuple = (2.0, 5.0)
    refine_p_start: float = 0.7
    refine_p_step: float = 0.05
    related_templates: int = 3
    unrelated_pairing: str = "other_relation"
    unrelated_partners: int = 3
    edit_matched_sizes: tuple = (5,)
    ppl_statements: int = 20
    eval_batch_size: int = 32
    edit_scaled: bool = False
    edit_lambda1: float = 2.0
    edit_lambda2: float = 2.0
    erase_top_k: int = 20

    @classmethod
    def from_params(cls, p) -> "EditSettings":
        values = {f.name: getattr(p, f.name) for f in dataclasses.fields(cls)}
        return cls(**values | {"refine_size_range": tuple(values["refine_size_range"]),
                               "edit_matched_sizes": tuple(values["edit_matched_sizes"])})


@dataclass
class InterventionSetup:
    """What chapters 5 and 6 share. prompts: the run's prompt table indexed by prompt_id; design: one row per test
    fact; sets: {method key: {fact_id: frozenset}} (with the random controls); input_ids: {prompt_id: [seq]
    LongTensor}; p_by_relation: the nine-set refining p; refined_by_relation: chapter 3's refined sets per relation;
    loaded: kn.core.models.LoadedModel (None if not loaded)."""

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


def prepare_interventions(run, settings: EditSettings, loaded=None) -> InterventionSetup:
    """Read chapters 1-4's outputs from ``run`` (kn.base.rundir.RunFolder) and build the test design and every method's sets.
    loaded: the model (its tokenizer makes input_ids); None leaves input_ids empty (for tests of the design)."""
    prompts = run.read_table("prompts", chapter="chapter 1 (01_data_adaptation)")
    store = AttributionStore.open(run.folder("attribution"))  # run.folder notes the store's version as read
    L, H = store.manifest["n_layers"], store.manifest["n_neurons"]
    coarse = store.coarse_sets_by_prompt(prompts, settings.coarse_threshold)
    refine_sets = store.coarse_sets_by_prompt(prompts, settings.refine_threshold)
    detector = run.read_table("detector_sets", chapter="chapter 4 (04_land)")
    per_prompt = {"baseline": coarse}
    for key, group in detector.groupby("method"):
        per_prompt[key] = {p: frozenset(int(i) for i in ids) for p, ids in zip(group["prompt_id"], group["neuron_ids"])}
    per_prompt["constant"] = frozenset(run.read_json("constant_set", chapter="chapter 4 (04_land)")["neuron_ids"])
    lo, hi = settings.refine_size_range
    p_by_relation = refine_p_on_train(prompts, refine_sets, p0=settings.refine_p_start, step=settings.refine_p_step,
                                      lo=lo, hi=hi, seed=settings.seed, held_out=settings.related_templates)
    objects = run.read_table("objects", chapter="chapter 1 (01_data_adaptation)")
    design = design_conditions(prompts, seed=settings.seed, unrelated=settings.unrelated_pairing,
                               related_templates=settings.related_templates,
                               unrelated_partners=settings.unrelated_partners, objects=objects)
    sets = method_sets(design, prompts, per_prompt, refine_sets=refine_sets, p_by_relation=p_by_relation,
                       n_layers=L, n_neurons=H, seed=settings.seed)
    ident_scores = store_scores(store, prompts.set_index("prompt_id").loc[design["same_prompt"]])
    land_size = max(1, int(round(np.mean([len(x) for x in sets["land"].values()])))) if "land" in sets else 1
    sizes = sorted(set(settings.edit_matched_sizes) | {land_size})
    matched = matched_size_sets(design, sets, ident_scores, sizes)
    refined = run.read_table("refined_sets", chapter="chapter 3 (03_overlap)")
    refined_by_relation = {r: [frozenset(int(i) for i in ids) for ids in g["neuron_ids"]]
                           for r, g in refined.groupby("relation", sort=True)}
    input_ids = {}
    if loaded is not None:

        input_ids = dict(zip(prompts["prompt_id"], tokenize_prompts(loaded.tokenizer, prompts["prompt"])))
    return InterventionSetup(prompts.set_index("prompt_id", drop=False), design, sets, input_ids, p_by_relation, L, H,
                             refined_by_relation, objects, loaded, matched, land_size)


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

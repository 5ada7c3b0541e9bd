"""Chapter 4's consistency split (kn.experiments.consistency_split, kn.methods.consistency): facts classed on half A of
their relation's templates, every method measured on half B, and the class contrast read as a difference-in-differences
against input-blind nulls. On hand-made coarse sets of known agreement: the halves, what classing reads, the thresholds,
the shares, and the defect of the former analysis (classing and gain read off the same coarse sets) that the split
removes."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pandas as pd
import pytest

from kn.book import figures, findings
from kn.experiments.consistency_split import OWN_OVERLAP, consistency_split_study
from kn.methods import consistency, detectors

N_RELATIONS, N_TEMPLATES, N_FACTS = 4, 6, 16  # per relation: facts alternate consistent / inconsistent, half train
N_BOOT = 300


def _relation_set(r: int) -> frozenset:
    return frozenset(range(1000 * (r + 1), 1000 * (r + 1) + 5))


def _shared_set(fact_index: int) -> frozenset:
    return frozenset(range(100_000 + 10 * fact_index, 100_000 + 10 * fact_index + 4))


def _world():
    """(prompts, coarse, truth {fact: designed class}): a consistent fact's prompts hold its relation's 5 neurons, its
    own 4 shared neurons and 1-3 neurons of the prompt alone; an inconsistent fact's hold the relation's neurons, one of
    its shared neurons (a different one per template) and 5-8 neurons of the prompt alone."""
    rows, coarse, truth = [], {}, {}
    noise = iter(range(1_000_000, 10_000_000))
    fact_index = 0
    for r in range(N_RELATIONS):
        for i in range(N_FACTS):
            fact = f"r{r}_f{i:02d}"
            inconsistent = i % 2 == 1
            truth[fact] = "inconsistent" if inconsistent else "consistent"
            shared = sorted(_shared_set(fact_index))
            for t in range(N_TEMPLATES):
                prompt = f"{fact}#{t}"
                n_own = 5 + (i + t) % 4 if inconsistent else 1 + (i + t) % 3
                own = frozenset(next(noise) for _ in range(n_own))
                part = frozenset([shared[t % 4]]) if inconsistent else frozenset(shared)
                coarse[prompt] = _relation_set(r) | part | own
                rows.append({"prompt_id": prompt, "fact_id": fact, "relation": f"r{r}", "template_position": t,
                             "split": "train" if i < N_FACTS // 2 else "test", "subject": fact, "object": "o"})
            fact_index += 1
    return pd.DataFrame(rows), coarse, truth


def _blind_sets(prompts: pd.DataFrame) -> dict:
    """The input-blind detectors: one set for every prompt, and one set per relation (its 5 relation neurons)."""
    test = prompts[prompts["split"] == "test"]
    constant = frozenset({1, 2, 3})
    return {"constant": {p: constant for p in test["prompt_id"]},
            "relation_prior": {p: _relation_set(int(r[1:])) for p, r in zip(test["prompt_id"], test["relation"])}}


def _study(prompts, coarse, sets_by_method, **kwargs):
    fact_cluster = dict(zip(prompts["fact_id"], prompts["relation"]))
    return consistency_split_study(prompts, coarse, sets_by_method, fact_cluster, seed=kwargs.pop("seed", 0),
                                   n_boot=N_BOOT, **kwargs)


# --------------------------------------------------------------------------- (a) the halves, and what classing reads


def test_halves_are_per_relation_disjoint_seeded_and_floor_ceil_sized():
    prompts, _, _ = _world()
    five = prompts[(prompts["relation"] == "r3") & (prompts["template_position"] < 5)]  # a relation of 5 templates
    prompts = pd.concat([prompts[prompts["relation"] != "r3"], five])
    halves = consistency.template_halves(prompts, seed=0)
    for relation, part in halves.groupby("relation"):
        a = set(part.loc[part["half"] == "A", "template_position"])
        b = set(part.loc[part["half"] == "B", "template_position"])
        n = prompts.loc[prompts["relation"] == relation, "template_position"].nunique()
        assert a.isdisjoint(b) and a | b == set(range(n))
        assert (len(a), len(b)) == (n // 2, n - n // 2)
    assert halves.equals(consistency.template_halves(prompts.sample(frac=1.0, random_state=3), seed=0))
    assert any(not halves.equals(consistency.template_halves(prompts, seed=s)) for s in (1, 2, 3))
    # every fact of a relation is cut the same way: its half-A prompts sit at the relation's half-A templates
    half_a = consistency.prompts_in_half(prompts, halves, "A")
    for relation, part in half_a.groupby("relation"):
        positions = part.groupby("fact_id")["template_position"].apply(frozenset)
        assert positions.nunique() == 1
        assert set(positions.iloc[0]) == set(halves.query("relation == @relation and half == 'A'")["template_position"])


def test_classing_reads_half_a_only():
    prompts, coarse, _ = _world()
    blind = _blind_sets(prompts)
    split = _study(prompts, coarse, blind)
    halves = consistency.template_halves(prompts, seed=0)
    half_b = consistency.prompts_in_half(prompts, halves, "B")
    # half B rewritten: every set the same, or the consistent facts' sets scattered; the classes must not move
    for rewrite in (lambda p, s: frozenset({7}), lambda p, s: frozenset({zlib.crc32(p.encode())})):
        changed = dict(coarse)
        changed.update({p: rewrite(p, coarse[p]) for p in half_b["prompt_id"]})
        other = _study(prompts, changed, blind)
        pd.testing.assert_series_equal(other.scores["consistency"], split.scores["consistency"])
        for name in consistency.CONSISTENCY_SCORES:
            pd.testing.assert_series_equal(other.scores[name], split.scores[name])
        pd.testing.assert_frame_equal(other.thresholds, split.thresholds)
        assert other.threshold == split.threshold
    # and the classes are those the world was built with
    _, _, truth = _world()
    assert split.scores["consistency"].to_dict() == {f: truth[f] for f in split.scores.index}


# --------------------------------------------------------------------------- (b), (c) an input-blind detector


def test_an_input_blind_detector_shows_no_class_difference():
    prompts, coarse, _ = _world()
    split = _study(prompts, coarse, _blind_sets(prompts))
    blind = split.contrasts[split.contrasts["method"].isin(["constant", "relation_prior"])]
    assert set(zip(blind["method"], blind["reference"])) == {("constant", "relation_prior"), ("constant", OWN_OVERLAP),
                                                             ("relation_prior", "constant"),
                                                             ("relation_prior", OWN_OVERLAP)}
    for row in blind.itertuples():
        assert row.contrast.mean == 0.0 and row.contrast.covers(0.0)
        assert row.holds is None and "not distinguishable here" in row.verdict
        assert "gains more" not in row.verdict
    # the gain over the coarse sets alone still differs by class (half A's class predicts half B's coarse agreement):
    # which is why the contrast is taken against the null, not against the coarse sets
    gains = split.by_class.set_index(["method", "consistency"])["gain"]
    assert gains[("constant", "inconsistent")].lo > gains[("constant", "consistent")].hi
    assert split.welch["p_value"] < 0.05 and split.welch["mean_consistent"] > split.welch["mean_inconsistent"]


def test_the_former_circular_analysis_shows_a_spurious_class_difference():
    """kn.methods.consistency.class_gain on the classes read off the same coarse sets (as land_robustness.seed_study
    does): the constant set, which ignores its input, "gains more where paraphrases disagree". This is the defect."""
    prompts, coarse, _ = _world()
    test = prompts[prompts["split"] == "test"]
    train_facts = prompts.loc[prompts["split"] == "train", "fact_id"].unique()
    classes, _ = consistency.consistency_classes(prompts, coarse, reference_facts=train_facts)
    constant = frozenset({1, 2, 3})
    constant_overlap = detectors.overlap_by_fact(test, {p: constant for p in test["prompt_id"]}, seed=0)
    coarse_overlap = detectors.overlap_by_fact(test, {p: coarse[p] for p in test["prompt_id"]}, seed=0)
    table = consistency.class_gain(constant_overlap, coarse_overlap, classes["consistency"], n_boot=N_BOOT, seed=0,
                                   clusters=dict(zip(prompts["fact_id"], prompts["relation"])))
    assert table.loc["inconsistent", "gain_lo"] > table.loc["consistent", "gain_hi"]


def test_agreement_that_is_noise_is_not_carried_from_half_a_to_half_b():
    """Where a fact's agreement is chance alone, classing on every template selects the coarse overlap it then
    subtracts (the constant set gains more in the inconsistent class); classing on half A, reading half B does not."""
    rng = np.random.default_rng(5)
    rows, coarse = [], {}
    for r in range(6):
        pool = np.arange(10_000 * (r + 1), 10_000 * (r + 1) + 40)
        for i in range(24):
            fact = f"r{r}_f{i:02d}"
            for t in range(8):
                prompt = f"{fact}#{t}"
                coarse[prompt] = frozenset(rng.choice(pool, size=12, replace=False).tolist())
                rows.append({"prompt_id": prompt, "fact_id": fact, "relation": f"r{r}", "template_position": t,
                             "split": "train" if i < 8 else "test"})
    prompts = pd.DataFrame(rows)
    test = prompts[prompts["split"] == "test"]
    clusters = dict(zip(prompts["fact_id"], prompts["relation"]))
    constant = {p: frozenset({1, 2, 3}) for p in test["prompt_id"]}
    train_facts = prompts.loc[prompts["split"] == "train", "fact_id"].unique()
    classes, _ = consistency.consistency_classes(prompts, coarse, reference_facts=train_facts,
                                                 score="mean_pairwise_jaccard")
    coarse_overlap = detectors.overlap_by_fact(test, {p: coarse[p] for p in test["prompt_id"]}, seed=0)
    circular = consistency.class_gain(detectors.overlap_by_fact(test, constant, seed=0), coarse_overlap,
                                      classes["consistency"], n_boot=N_BOOT, seed=0, clusters=clusters)
    assert circular.loc["inconsistent", "gain_lo"] > circular.loc["consistent", "gain_hi"]
    split = consistency_split_study(prompts, coarse, {"constant": constant}, clusters, score="mean_pairwise_jaccard",
                                    seed=0, n_boot=N_BOOT)
    on_half_b = split.overlap["coarse"]["within"]
    classes_b = split.scores["consistency"].reindex(on_half_b.index)
    values = -split.overlap["coarse"]["fact_specific"]  # the constant set's gain: 0 minus the coarse sets'
    contrast = consistency.class_contrast(values, classes_b, [clusters[f] for f in values.index], n_boot=N_BOOT,
                                          seed=0)
    assert contrast.covers(0.0)


# --------------------------------------------------------------------------- (d) a detector that does gain more


def test_a_detector_that_adds_the_shared_neurons_where_paraphrases_disagree_shows_a_positive_contrast():
    prompts, coarse, truth = _world()
    test = prompts[prompts["split"] == "test"]
    index_of = {f: i for i, f in enumerate(dict.fromkeys(prompts["fact_id"]))}
    helps_where_they_disagree, helps_everywhere = {}, {}
    for p, f, r, t in zip(test["prompt_id"], test["fact_id"], test["relation"], test["template_position"]):
        relation, shared = _relation_set(int(r[1:])), _shared_set(index_of[f])
        own = frozenset(range(-3 * (index_of[f] * N_TEMPLATES + t), -3 * (index_of[f] * N_TEMPLATES + t) + (
            index_of[f] + t) % 3))  # 0-2 neurons of the prompt alone, so that facts differ within a class
        helps_where_they_disagree[p] = relation | own | (shared if truth[f] == "inconsistent" else frozenset())
        helps_everywhere[p] = relation | shared
    split = _study(prompts, coarse, {**_blind_sets(prompts), "land": helps_where_they_disagree,
                                     "oracle": helps_everywhere})
    rows = split.contrasts.set_index(["method", "reference"])
    for reference in ("constant", "relation_prior", OWN_OVERLAP):
        row = rows.loc[("land", reference)]
        assert row["contrast"].lo > 0 and row["p_value"] < 0.05 and row["holds"] is True
        assert "gains more where paraphrases disagree" in row["verdict"]
    # as good in both classes: its gain over the coarse sets is larger where they disagree, its contrast is 0
    gains = split.by_class.set_index(["method", "consistency"])["gain"]
    assert gains[("oracle", "inconsistent")].lo > gains[("oracle", "consistent")].hi
    assert rows.loc[("oracle", "constant"), "contrast"].mean == 0.0
    assert "not distinguishable here" in rows.loc[("oracle", "constant"), "verdict"]


# --------------------------------------------------------------------------- (e), (f) thresholds and shares


def test_otsu_is_fitted_on_the_train_facts_only():
    prompts, coarse, _ = _world()
    halves = consistency.template_halves(prompts, seed=0)
    half_a = consistency.prompts_in_half(prompts, halves, "A")
    blind = _blind_sets(prompts)
    otsu = _study(prompts, coarse, blind).thresholds.query("rule == 'otsu'").set_index("score")["threshold"]
    for split_name, moves in (("test", False), ("train", True)):
        changed = dict(coarse)
        for p, f, s in zip(half_a["prompt_id"], half_a["fact_id"], half_a["split"]):
            if s == split_name:
                changed[p] = frozenset({zlib.crc32(f.encode())})  # the fact's half-A sets now agree perfectly
        moved = _study(prompts, changed, blind).thresholds.query("rule == 'otsu'").set_index("score")["threshold"]
        assert (not moved.equals(otsu)) == moves


def test_shares_rise_with_the_threshold_and_their_intervals_are_never_zero_width():
    prompts, coarse, _ = _world()
    split = _study(prompts, coarse, _blind_sets(prompts))
    for score, part in split.shares.groupby("score"):
        fixed = part[part["rule"] == "fixed"].sort_values("threshold")
        assert list(fixed["threshold"]) == [0.1, 0.2, 0.3, 0.4, 0.5]
        assert np.all(np.diff(fixed["share"].map(lambda i: i.mean).to_numpy()) >= 0)
        assert (part["rule"] == "otsu").sum() == 1
    assert (split.shares["share_hi"] > split.shares["share_lo"]).all()
    assert split.shares["share"].map(lambda i: i.mean).min() == 0.0  # a threshold under every score: 0 of n
    none = consistency.inconsistent_shares(split.scores["intersection_over_union"],
                                           {"below all": -1.0, "above all": 2.0}, {}, n_boot=N_BOOT, seed=0)
    assert none.loc["below all", "share"].mean == 0.0 and none.loc["below all", "share_hi"] > 0
    assert none.loc["above all", "share"].mean == 1.0 and none.loc["above all", "share_lo"] < 1


def test_class_contrast_and_its_permutation_test_on_known_values():
    classes = ["consistent", "inconsistent"] * 20
    clusters = [i // 8 for i in range(40)]
    flat = consistency.class_contrast(np.full(40, 0.3), classes, clusters, n_boot=N_BOOT, seed=0)
    assert flat.mean == 0.0 and math.isnan(flat.lo) and flat.covers(0.0)
    assert consistency.class_contrast_p(np.full(40, 0.3), classes, clusters, n_perm=N_BOOT, seed=0) == 1.0
    shifted = np.where(np.array(classes) == "inconsistent", 0.5, 0.2) + np.linspace(0, 0.01, 40)
    contrast = consistency.class_contrast(shifted, classes, clusters, n_boot=N_BOOT, seed=0)
    assert contrast.lo > 0.25 and contrast.n_clusters == 5
    assert consistency.class_contrast_p(shifted, classes, clusters, n_perm=N_BOOT, seed=0) < 0.01
    two_valued = consistency.class_contrast(np.where(np.array(classes) == "inconsistent", 0.5, 0.2), classes, clusters,
                                            n_boot=N_BOOT, seed=0)  # every resample gives 0.3: no zero-width interval
    assert two_valued.mean == pytest.approx(0.3) and math.isnan(two_valued.lo) and not two_valued.excludes_zero
    one_class = consistency.class_contrast(shifted, ["consistent"] * 40, clusters, n_boot=N_BOOT, seed=0)
    assert math.isnan(one_class.mean)
    with pytest.raises(ValueError):
        consistency.class_contrast(shifted, ["agree"] * 40, clusters, n_boot=N_BOOT, seed=0)


# --------------------------------------------------------------------------- the page: tables, sanity line, figure


def test_the_page_reads_the_split_and_names_the_rule_ours():
    import matplotlib  # the lock installs it: a missing one is a failure, not a skip

    matplotlib.use("Agg")
    prompts, coarse, _ = _world()
    split = _study(prompts, coarse, _blind_sets(prompts))
    shares = findings.consistency_shares_table(split)
    assert len(shares) == 2 * (1 + 5) and shares["share inconsistent"].map(lambda i: i.hi > i.lo).all()
    classes = findings.consistency_class_table(split)
    assert len(classes) == 3 * 2  # coarse, constant, relation prior x two classes
    contrasts = findings.consistency_contrast_table(split)
    assert set(contrasts["reading"]) == {"not distinguishable here"}
    assert "Sanity check" in findings.consistency_sanity_line(split)
    assert "our reading of Chen et al." in findings.consistency_captions(split)["shares"]
    fig, caption = figures.consistency_distributions(split)
    assert figures.tick_label_overlaps(fig) == [] and "our reading of Chen et al." in caption
    other = _study(prompts, coarse, _blind_sets(prompts), score="mean_pairwise_jaccard", threshold=0.3)
    assert figures.consistency_distributions(other)[1] != caption  # the caption follows the data
    assert other.threshold_rule == "fixed" and other.threshold == 0.3

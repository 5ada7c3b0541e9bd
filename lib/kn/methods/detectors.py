"""kn.methods.detectors: rules that see what LAND sees, overlap per fact, learning curves and held-out wordings.

Does a learned detector beat simple rules given the same information, and could its paraphrase overlap come from
emitting much the same set for every fact? Sets are frozensets of flat neuron ids (kn.base.neurons); prompts are named by
``prompt_id``; prompt tables have columns prompt_id, fact_id, relation, template_position, split. Targets are
{fact_id: (ids int64 [k], counts float32 [k])} from kn.methods.counterexamples.build_targets, built on TRAIN facts unless said otherwise.

API
    jaccard(a, b) -> float                            |a & b| / |a | b|; nan for two empty sets
    target_sets(targets, threshold) -> {fact: frozenset}            target neurons with count > threshold
    relation_prior_sets(train_targets, fact_relation, queries, sizes) -> {prompt_id: frozenset}
        the top-n neurons of the query's relation (n = sizes[prompt_id]), ranked over train facts only
    nearest_neighbour_sets(train_sets, train_fact, train_targets, query_sets, threshold, *, exclude_same_fact=None,
        batch_size=None) -> ({prompt_id: frozenset}, {prompt_id: matched train prompt_id})
        the target (count > threshold) of the fact of the train prompt whose coarse set is nearest in Jaccard
    oracle_sets(fact_sets, counter_sets, threshold) -> {fact: frozenset}   the fact's own target: the ceiling
    overlap_by_fact(prompts, sets, *, seed, n_pairs_per_fact=50) -> DataFrame [fact] x OVERLAP_COLUMNS
        (size, within, across_same_relation, across_other_relation, fact_specific)      like LAND's Table 7
    heldout_overlap_by_fact(prompts, sets, heldout, *, seed, n_pairs_per_fact=50) -> DataFrame, same columns
        the held-out wording's set against the seen wordings of its own fact and of other facts
    nested_fact_samples(facts, fractions, *, seed) -> [[fact]]      prefixes of one seeded permutation
    learning_curve(train_pairs, targets, n_layers, n_neurons, settings, fractions, evaluate, *, seed, device) -> DataFrame
        one row per (setting, fraction): setting, fraction, n_train_facts, n_train_prompts, evaluate's metrics

LAND itself, the prompt's own coarse set and the constant set are in kn.methods.land (train_land, land_sets,
top_k_constant_set). The overlap tables and wording_holdout draw from one numpy stream per fact or per relation
(seeded by (seed, crc32(str(id))), as kn.methods.counterexamples.draw_counterexamples), and everything is sorted by id first, so no
result depends on a table's row order; the learning curve's samples are prefixes of one seeded permutation.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from kn.base.neurons import jaccard
from kn.base.overlap import pair_jaccards
from kn.methods.counterexamples import build_targets
from kn.methods.land import LandDetector, LandHyperParams, train_land

OVERLAP_COLUMNS = ("size", "within", "across_same_relation", "across_other_relation", "fact_specific",
                   "same_template_other_fact")


_LISTED_PAIRS = 4096  # above this many candidate pairs, across-fact pairs are drawn by index (kn.methods.detectors._Pool)


def _require(frame: pd.DataFrame, columns: set, what: str) -> None:
    missing = set(columns) - set(frame.columns)
    if missing:
        raise ValueError(f"{what}: prompts lack column(s) {sorted(missing)}")


def _stream(seed: int, name: Hashable) -> np.random.Generator:
    """A numpy stream of its own for one fact or relation, as in kn.methods.counterexamples.draw_counterexamples."""
    return np.random.default_rng([int(seed), zlib.crc32(str(name).encode())])




def _mean(values) -> float:
    """Mean of the non-nan values (pairs of two empty sets are nan and skipped); nan if none is left."""
    arr = np.asarray(values, dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


# --------------------------------------------------------------------------- baselines


def target_sets(targets: Mapping, threshold: float) -> dict:
    """{fact_id: frozenset of the target's ids whose count > threshold}: the set LAND is trained to emit, read at
    LAND's threshold P. targets: {fact_id: (ids int64 [k], counts float32 [k])} (kn.methods.counterexamples.build_targets)."""
    out = {}
    for fact, (ids, counts) in targets.items():
        ids, counts = np.asarray(ids, dtype=np.int64), np.asarray(counts, dtype=np.float64)
        out[fact] = frozenset(ids[counts > float(threshold)].tolist())
    return out


def relation_prior_sets(train_targets: Mapping, fact_relation: Mapping, queries: pd.DataFrame,
                        sizes: Mapping) -> dict:
    """The relation-level baseline: every prompt of a relation gets that relation's most common target neurons.

    train_targets: {fact_id: (ids int64 [k], counts float32 [k])} of the TRAIN facts only (the caller's duty: this
        function cannot tell a test fact from a train fact, and it ranks over every fact it is given).
    fact_relation: {fact_id: relation} for (at least) the facts of train_targets; extra facts are ignored.
    queries: DataFrame with columns prompt_id, relation (one row per query prompt; other columns are ignored).
    sizes: {prompt_id: int >= 0}, how many neurons each query gets (e.g. the size of LAND's set for that prompt,
        so the two are compared at equal size).
    Per relation, neurons are ranked by the number of train facts whose target holds them (count > 0), ties by the
    larger summed count, then the smaller id; a query gets the first sizes[prompt_id] of its relation's ranking
    (fewer if the ranking is shorter). The ranking depends only on train_targets: query rows never enter it.
    A query whose relation has no train fact raises ValueError (an empty answer would pass silently into the
    overlap means as "no information"; the caller should drop such relations explicitly).
    Returns {prompt_id: frozenset}.
    """
    _require(queries, {"prompt_id", "relation"}, "relation_prior_sets")
    by_relation: dict = {}
    for fact, (ids, counts) in train_targets.items():
        if fact not in fact_relation:
            raise KeyError(f"relation_prior_sets: train fact {fact!r} has no relation in fact_relation")
        ids, counts = np.asarray(ids, dtype=np.int64), np.asarray(counts, dtype=np.float64)
        keep = counts > 0
        by_relation.setdefault(fact_relation[fact], []).append((ids[keep], counts[keep]))
    rankings: dict = {}
    for relation, parts in by_relation.items():
        ids = np.concatenate([p[0] for p in parts])
        counts = np.concatenate([p[1] for p in parts])
        unique, inverse = np.unique(ids, return_inverse=True)
        n_facts = np.bincount(inverse, minlength=unique.size)  # a fact's ids are unique: one count per fact
        sums = np.bincount(inverse, weights=counts, minlength=unique.size)
        rankings[relation] = unique[np.lexsort((unique, -sums, -n_facts))]  # last key sorts first
    out = {}
    for prompt, relation in zip(queries["prompt_id"], queries["relation"]):
        if relation not in rankings:
            raise ValueError(f"relation_prior_sets: relation {relation!r} of query {prompt!r} has no train fact; "
                             f"drop its queries or give train targets for it")
        if prompt not in sizes:
            raise KeyError(f"relation_prior_sets: no size for query {prompt!r}")
        n = int(sizes[prompt])
        if n < 0:
            raise ValueError(f"relation_prior_sets: sizes[{prompt!r}]={n} must be 0 or more")
        out[prompt] = frozenset(rankings[relation][:n].tolist())
    return out


def nearest_neighbour_sets(train_sets: Mapping, train_fact: Mapping, train_targets: Mapping, query_sets: Mapping,
                           threshold: float, *, exclude_same_fact: Mapping | None = None,
                           batch_size: int | None = None) -> tuple[dict, dict]:
    """The memorising baseline: answer a coarse set with the target of the most similar training prompt's fact.

    train_sets: {train prompt_id: coarse set}; train_fact: {train prompt_id: fact_id} (for every train prompt);
    train_targets: {fact_id: (ids [k], counts [k])}, holding every fact of train_fact;
    query_sets: {query prompt_id: coarse set}; threshold: LAND's P (a target neuron is answered if count > P).
    exclude_same_fact: {query prompt_id: fact_id}: that query may not match a train prompt of this fact (for a
        held-out wording of a train fact, whose other wordings are in the train pool); queries absent from it, or
        None, may match anything. A query with no allowed train prompt raises ValueError.
    batch_size: queries densified at once (default: as many as fit 2**24 floats over the train sets' neurons).
    The match maximises the Jaccard of the coarse sets; two empty sets count as 0 (no evidence of similarity);
    ties go to the smaller train prompt_id in string order. Jaccards are computed exactly (integer counts, then one
    float64 division each, so equal ratios compare equal): intersections are a sparse product, the train sets as a
    flat id list with offsets, the query batch as a dense 0/1 matrix over the train sets' neurons only
    [n_neurons_seen, batch] (torch.nn.functional.embedding_bag, mode "sum").
    Returns ({query prompt_id: frozenset}, {query prompt_id: matched train prompt_id}).
    """
    if not train_sets:
        raise ValueError("nearest_neighbour_sets: no train sets")
    names = sorted(train_sets, key=str)
    missing = [k for k in names if k not in train_fact]
    if missing:
        raise KeyError(f"nearest_neighbour_sets: {len(missing)} train prompt(s) without a fact, e.g. {missing[0]!r}")
    facts = [train_fact[k] for k in names]
    absent = sorted({f for f in facts if f not in train_targets}, key=str)
    if absent:
        raise KeyError(f"nearest_neighbour_sets: {len(absent)} fact(s) without a target, e.g. {absent[0]!r}")
    fact_code = {f: i for i, f in enumerate(dict.fromkeys(facts))}
    codes = np.array([fact_code[f] for f in facts], dtype=np.int64)
    answers = target_sets({f: train_targets[f] for f in fact_code}, threshold)

    rows = [np.array(sorted(train_sets[k]), dtype=np.int64) for k in names]
    lengths = np.array([r.size for r in rows], dtype=np.int64)
    flat = np.concatenate(rows)
    vocab, inverse = np.unique(flat, return_inverse=True)  # only neurons some train set holds can intersect
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64))
    if flat.size == 0:  # every train set is empty: embedding_bag needs one row to read; an all-zero one
        vocab, inverse = np.zeros(1, np.int64), np.zeros(0, np.int64)
    flat_t = torch.from_numpy(inverse.astype(np.int64))
    if batch_size is None:
        batch_size = max(1, (1 << 24) // vocab.size)

    queries = list(query_sets)
    sets_out, matched = {}, {}
    for start in range(0, len(queries), batch_size):
        part = queries[start:start + batch_size]
        dense = torch.zeros(vocab.size, len(part), dtype=torch.float32)
        q_len = np.zeros(len(part), dtype=np.int64)
        for j, key in enumerate(part):
            ids = np.array(sorted(query_sets[key]), dtype=np.int64)
            q_len[j] = ids.size
            pos = np.searchsorted(vocab, ids)
            ok = pos < vocab.size
            ok[ok] &= vocab[pos[ok]] == ids[ok]
            dense[torch.from_numpy(pos[ok]), j] = 1.0
        # [T, batch]: integer intersections, exact in float32 below 2**24
        inter = torch.nn.functional.embedding_bag(flat_t, dense, offsets, mode="sum").numpy().astype(np.float64)
        union = lengths[:, None] + q_len[None, :] - inter
        score = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        if exclude_same_fact:
            for j, key in enumerate(part):
                if key in exclude_same_fact:
                    banned = codes == fact_code.get(exclude_same_fact[key], -1)
                    if banned.all():
                        raise ValueError(f"nearest_neighbour_sets: query {key!r} may not match its fact "
                                         f"{exclude_same_fact[key]!r}, and the train pool holds no other fact")
                    score[banned, j] = -1.0
        best = score.argmax(axis=0)  # first maximum: the smaller prompt_id, since names are sorted
        for j, key in enumerate(part):
            train_key = names[int(best[j])]
            matched[key] = train_key
            sets_out[key] = answers[train_fact[train_key]]
    return sets_out, matched


def oracle_sets(fact_sets: Mapping, counter_sets: Mapping, threshold: float) -> dict:
    """The ceiling: each fact's own target (kn.methods.counterexamples.build_targets on ALL its prompts' coarse sets, counter-example
    neurons removed), thresholded at ``threshold`` (count > threshold). No detector can do this at test time: it
    needs every prompt of the fact. fact_sets: {fact_id: [coarse sets]}; counter_sets: {fact_id: [coarse sets]}.
    Returns {fact_id: frozenset} (one set per fact, the same for each of its prompts)."""
    return target_sets(build_targets(fact_sets, counter_sets), threshold)


# --------------------------------------------------------------------------- overlap per fact


class _Pool:
    """The prompts with a set, sorted by (relation, fact, prompt_id) as strings, so that each relation and each
    fact is one contiguous block and the order does not depend on the table's row order."""

    def __init__(self, prompts: pd.DataFrame, sets: Mapping, leave_out=frozenset()):
        duplicated = prompts["prompt_id"][prompts["prompt_id"].duplicated()]
        if len(duplicated):
            raise ValueError(f"prompts: prompt_id {duplicated.iloc[0]!r} appears in more than one row")
        self.relation_of = {}
        for fact, relation in zip(prompts["fact_id"], prompts["relation"]):
            if self.relation_of.setdefault(fact, relation) != relation:
                raise ValueError(f"fact {fact!r} appears under two relations ({self.relation_of[fact]!r}, "
                                 f"{relation!r})")
        # relations that hold identical prompts (one cluster, kn.data.pararel.relation_clusters) are one block, so
        # that "other relations" never holds a fact's own twin
        cluster_of = dict(zip(prompts["relation"], prompts["cluster"])) if "cluster" in prompts else {}
        rows = sorted(((str(cluster_of.get(r, r)), str(r), str(f), str(p)), f, p, r) for p, f, r in
                      zip(prompts["prompt_id"], prompts["fact_id"], prompts["relation"])
                      if p in sets and p not in leave_out)
        self.sets = [frozenset(sets[p]) for _, _, p, _ in rows]
        template_of = (dict(zip(prompts["prompt_id"], prompts["template_position"])) if "template_position" in prompts
                       else {})
        # the wording of each row: pairs of one wording across facts share the template's neurons, not the fact's
        self.templates = np.array([template_of.get(p, str(p).rsplit("#", 1)[-1]) for _, _, p, _ in rows], dtype=object)
        self.template_of = {p: t for (_, _, p, _), t in zip(rows, self.templates)}
        self.positions: dict = {}  # template -> its rows, ascending (pairs are counted and drawn without listing them)
        for i, t in enumerate(self.templates.tolist()):
            self.positions.setdefault(t, []).append(i)
        self.positions = {t: np.asarray(v, dtype=np.int64) for t, v in self.positions.items()}
        self.fact_block, self.relation_block, self.cluster_block = {}, {}, {}
        self.cluster_of = {r: cluster_of.get(r, r) for r in self.relation_of.values()}
        for i, (_, f, _, r) in enumerate(rows):
            self.fact_block[f] = (self.fact_block.get(f, (i, i))[0], i + 1)
            self.relation_block[r] = (self.relation_block.get(r, (i, i))[0], i + 1)
            c = self.cluster_of[r]
            self.cluster_block[c] = (self.cluster_block.get(c, (i, i))[0], i + 1)

    def blocks(self, fact):
        """(relation block, fact block) as (start, end); a fact or relation without rows gets an empty block."""
        r0, r1 = self.relation_block.get(self.relation_of[fact], (0, 0))
        f0, f1 = self.fact_block.get(fact, (r0, r0))
        return (r0, r1), (f0, f1)

    def across(self, anchors: list, lo: int, hi: int, block: tuple, rng: np.random.Generator, n_pairs: int,
               templates, same_template: bool = False) -> float:
        """Mean Jaccard of (anchor, pool row) pairs, pool rows in [lo, hi) minus ``block``, over the pairs of two
        different templates (``same_template``: of the same template only; ``templates`` the anchors'): all such
        pairs if there are at most n_pairs, else n_pairs of them drawn from ``rng``; two empty sets are skipped.
        Within-fact pairs always join two wordings, so the across-fact control must too."""
        b0, b1 = block
        m = (hi - lo) - (b1 - b0)
        total = len(anchors) * m
        if total <= 0:
            return float("nan")
        if total > _LISTED_PAIRS:  # draw the pairs by index: the same draw, in O(n_pairs log n) instead of O(total)
            pairs = self._drawn(anchors, lo, hi, block, rng, n_pairs, templates, same_template)
            if pairs is not None:
                return _mean([jaccard(anchors[a], self.sets[r]) for a, r in pairs])
        which, column = np.divmod(np.arange(total), m)
        rows = lo + column
        rows = np.where(rows >= b0, rows + (b1 - b0), rows)  # step over the block
        equal = self.templates[rows] == np.asarray(templates, dtype=object)[which]
        keep = np.flatnonzero(equal if same_template else ~equal)
        if keep.size > n_pairs:
            keep = np.sort(rng.choice(keep, size=n_pairs, replace=False))
        return _mean([jaccard(anchors[a], self.sets[r]) for a, r in zip(which[keep].tolist(), rows[keep].tolist())])

    def _drawn(self, anchors, lo, hi, block, rng, n_pairs, templates, same_template):
        """across()'s sampled pairs [(anchor, row)] without listing every pair: each anchor's kept rows are counted
        from its template's positions, rng draws n_pairs of the K kept pairs by index (as rng.choice(keep) does:
        the same numbers), and each index is mapped back to its row (the j-th row of the template, or the j-th row
        of another template: the j-th number missing from the template's columns). None when K <= n_pairs."""
        b0, b1 = block
        m = (hi - lo) - (b1 - b0)
        columns, counts = [], []
        for t in templates:
            p = self.positions.get(t, np.zeros(0, np.int64))
            p = np.concatenate([p[np.searchsorted(p, lo):np.searchsorted(p, b0)] - lo,
                                p[np.searchsorted(p, b1):np.searchsorted(p, hi)] - lo - (b1 - b0)])
            columns.append(p)
            counts.append(p.size if same_template else m - p.size)
        ends = np.cumsum(counts)
        if not ends.size or ends[-1] <= n_pairs:
            return None
        index = np.sort(rng.choice(int(ends[-1]), size=n_pairs, replace=False))
        which = np.searchsorted(ends, index, side="right")
        out = []
        for a, k in zip(which.tolist(), index.tolist()):
            j, p = k - (int(ends[a]) - counts[a]), columns[a]
            column = int(p[j]) if same_template else j + int(np.searchsorted(p - np.arange(p.size), j, side="right"))
            out.append((a, lo + column + ((b1 - b0) if lo + column >= b0 else 0)))
        return out

    def row(self, fact, anchors: list, within: float, seed: int, n_pairs: int, templates) -> dict:
        (r0, r1), block = self.blocks(fact)
        r0_r1 = (r0, r1) if r1 > r0 else (0, 0)
        cluster = self.cluster_block.get(self.cluster_of[self.relation_of[fact]], r0_r1)
        rng = _stream(seed, fact)  # same relation first, then other relations, from one stream per fact
        same = self.across(anchors, r0, r1, block, rng, n_pairs, templates)
        other = self.across(anchors, 0, len(self.sets), cluster, rng, n_pairs, templates)
        wording = self.across(anchors, r0, r1, block, rng, n_pairs, templates, same_template=True)
        size = float(np.mean([len(s) for s in anchors])) if anchors else float("nan")
        return {"size": size, "within": within, "across_same_relation": same, "across_other_relation": other,
                "fact_specific": within - same, "same_template_other_fact": wording}


def _frame(rows: dict) -> pd.DataFrame:
    facts = sorted(rows, key=str)
    index = pd.Index(facts, name="fact_id")
    return pd.DataFrame([rows[f] for f in facts], index=index, columns=list(OVERLAP_COLUMNS), dtype=np.float64)


def overlap_by_fact(prompts: pd.DataFrame, sets: Mapping, *, seed: int, n_pairs_per_fact: int = 50) -> pd.DataFrame:
    """Paraphrase overlap per fact, and the same measured across facts (the control LAND's Table 7 lacks).

    prompts: one row per prompt, columns prompt_id, fact_id, relation (others ignored); prompts absent from ``sets``
        are left out (so a caller may pass the whole table and only the test prompts' sets).
    sets: {prompt_id: frozenset}, the method's set for each prompt.
    Per fact (A_1..A_n its prompts' sets):
        size: mean |A_i|.
        within: mean Jaccard over pairs i < j (kn.base.overlap.pair_jaccards; pairs of two empty sets skipped; nan if none).
        across_same_relation: mean Jaccard of (A_i, B) for B the set of a prompt of ANOTHER fact of the same relation
            at ANOTHER template (within-fact pairs always join two wordings, so the control does too); all such pairs
            if there are at most n_pairs_per_fact, else n_pairs_per_fact distinct pairs drawn uniformly (without
            replacement) from the fact's own seeded stream; two empty sets skipped.
        across_other_relation: the same against prompts of facts of other relations (drawn after the former); with
            a ``cluster`` column, of other clusters (a relation holding the fact's own prompts is not "other").
        fact_specific: within - across_same_relation (what the set says about this fact beyond its relation).
        same_template_other_fact: A_i against other facts of the relation at the SAME template (what a set says
            about the wording), reported on its own.
    A constant set gives within = across = 1 and fact_specific 0; a set constant per relation gives fact_specific 0.
    Returns a DataFrame indexed by fact_id (sorted in string order) with OVERLAP_COLUMNS, float64: one row per fact,
    ready for a paired bootstrap over facts. Independent of the row order of ``prompts``.
    """
    _require(prompts, {"prompt_id", "fact_id", "relation"}, "overlap_by_fact")
    pool = _Pool(prompts, sets)
    rows = {}
    for fact, (f0, f1) in pool.fact_block.items():
        anchors = pool.sets[f0:f1]
        rows[fact] = pool.row(fact, anchors, _mean(pair_jaccards(anchors)), seed, n_pairs_per_fact,
                              pool.templates[f0:f1])
    return _frame(rows)


def heldout_overlap_by_fact(prompts: pd.DataFrame, sets: Mapping, heldout: Mapping, *, seed: int,
                            n_pairs_per_fact: int = 50) -> pd.DataFrame:
    """Overlap of a NEW WORDING of a seen fact: the held-out prompt's set against the seen wordings.

    prompts: columns prompt_id, fact_id, relation; sets: {prompt_id: frozenset} (must hold every held-out prompt);
    heldout: {fact_id: held-out prompt_id} (e.g. from :func:`wording_holdout`).
    The held-out prompts (of all facts) are taken out of the pool, so that both sides compare the held-out wording
    with SEEN wordings only (with wording_holdout's one position per relation, the same-relation pool never holds
    the held-out template, just as the fact's own other prompts do not). Pass the train facts' prompts (or their
    sets only): a test fact's prompts would enter the pool, its prompt at the held-out template included. Per fact in ``heldout``, A its held-out set:
        size: |A|.
        within: mean Jaccard of A with each of the fact's other prompts' sets (two empty sets skipped).
        across_same_relation / across_other_relation: A against prompts of other facts of the same / other relations,
            all pairs if at most n_pairs_per_fact, else a seeded sample (as in :func:`overlap_by_fact`).
        fact_specific: within - across_same_relation.
    Returns a DataFrame indexed by fact_id (sorted in string order) with OVERLAP_COLUMNS.
    """
    _require(prompts, {"prompt_id", "fact_id", "relation"}, "heldout_overlap_by_fact")
    fact_of = dict(zip(prompts["prompt_id"], prompts["fact_id"]))
    for fact, prompt in heldout.items():
        if fact_of.get(prompt, object()) != fact:
            raise ValueError(f"heldout_overlap_by_fact: held-out prompt {prompt!r} is not a prompt of fact {fact!r}")
        if prompt not in sets:
            raise KeyError(f"heldout_overlap_by_fact: no set for held-out prompt {prompt!r}")
    pool = _Pool(prompts, sets, leave_out=frozenset(heldout.values()))
    template_of = (dict(zip(prompts["prompt_id"], prompts["template_position"])) if "template_position" in prompts
                   else {})
    rows = {}
    for fact, prompt in heldout.items():
        anchor = frozenset(sets[prompt])
        _, (f0, f1) = pool.blocks(fact)
        within = _mean([jaccard(anchor, s) for s in pool.sets[f0:f1]])
        rows[fact] = pool.row(fact, [anchor], within, seed, n_pairs_per_fact,
                              [template_of.get(prompt, str(prompt).rsplit("#", 1)[-1])])
    return _frame(rows)


# --------------------------------------------------------------------------- learning curve


def nested_fact_samples(facts, fractions: Sequence[float], *, seed: int) -> list:
    """Nested samples of facts: one seeded permutation of the distinct facts (sorted in string order first, so the
    input order does not matter), and for each fraction f its first floor(f * n_facts) facts (1e-9 tolerance, so
    1.0 is all of them). A larger fraction's sample therefore holds every smaller one's.
    facts: iterable of fact ids (repeats allowed); fractions: each in (0, 1]; a fraction that leaves no fact raises
    ValueError. Returns [[fact_id, ...] per fraction], each list in permutation order."""
    unique = sorted(set(facts), key=str)
    order = [unique[i] for i in np.random.default_rng(int(seed)).permutation(len(unique))]
    out = []
    for fraction in fractions:
        fraction = float(fraction)
        if not 0 < fraction <= 1:
            raise ValueError(f"nested_fact_samples: fraction {fraction!r} must be in (0, 1]")
        n = int(math.floor(fraction * len(unique) + 1e-9))
        if n == 0:
            raise ValueError(f"nested_fact_samples: fraction {fraction!r} of {len(unique)} train facts leaves no fact")
        out.append(order[:n])
    return out


def learning_curve(train_pairs: Sequence, targets: Mapping, n_layers: int, n_neurons: int,
                   settings: Mapping[str, LandHyperParams], fractions: Sequence[float],
                   evaluate: Callable[[LandDetector, LandHyperParams], Mapping[str, float]], *, seed: int,
                   device="cpu") -> pd.DataFrame:
    """Train LAND on growing nested fractions of the train FACTS and evaluate each detector.

    train_pairs: [(frozenset coarse set, fact_id)], the train prompts; targets: {fact_id: (ids [k], counts [k])}
        (kn.methods.counterexamples.build_targets; it must hold every fact of train_pairs); n_layers, n_neurons: L, H.
    settings: {name: LandHyperParams}, e.g. ranks or epochs to compare; every setting sees the same samples.
    fractions: of the distinct train facts, nested (:func:`nested_fact_samples` with ``seed``); every prompt of a
        chosen fact goes in, in train_pairs order.
    evaluate: called once per (setting, fraction) with (trained model, its hp); returns {metric: float}, e.g. mean
        within / across overlap on the test facts. Its keys may not clash with the row's own columns.
    Returns a DataFrame, one row per (setting, fraction) in settings order then fractions order, with columns
    setting, fraction, n_train_facts, n_train_prompts and the metrics.
    """
    facts = [f for _, f in train_pairs]
    samples = nested_fact_samples(facts, fractions, seed=seed)
    reserved = {"setting", "fraction", "n_train_facts", "n_train_prompts"}
    rows = []
    for name, hp in settings.items():
        for fraction, chosen in zip(fractions, samples):
            chosen = set(chosen)
            pairs = [(s, f) for s, f in train_pairs if f in chosen]
            model, _ = train_land(pairs, targets, n_layers, n_neurons, hp, device=device)
            metrics = dict(evaluate(model, hp))
            clash = reserved & set(metrics)
            if clash:
                raise ValueError(f"learning_curve: evaluate returned reserved column(s) {sorted(clash)}")
            rows.append({"setting": name, "fraction": float(fraction), "n_train_facts": len(chosen),
                         "n_train_prompts": len(pairs), **{k: float(v) for k, v in metrics.items()}})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- new facts or new wordings







"""kn.book.preflight: what the parameters ask of the run's data and of its run folder, checked before any chapter
starts (kn.book.runner.execute_chapters, kn.book.submit); each problem is one BadInput line naming the key or file.

API
    check_run(params, chapters=(), whole_run=True) -> None
                                             check_run_dir, then run_sizes (own facts read and checked), check_sizes
                                             (skipped only for chapters 1 and 2 named alone, whole_run=False)
    check_run_dir(params, chapters)          run_dir (or a folder above it) is a file; chapter 2 about to add to a
                                             store whose manifest records other attribution settings (STORE_SETTINGS)
    run_sizes(params) -> RunSizes            the run's relations and each one's train and test facts: counted in
                                             facts_file (both files read and checked by kn.data.pararel, and every
                                             relation needs two objects or more: chapter 6 edits towards another one),
                                             else the declared train_facts_per_relation / test_facts_per_relation
    check_sizes(params, sizes)               values that cannot work at those sizes: the Unrelated pairing, LAND's
                                             validation facts and learning-curve shares, related_templates
    STORE_SETTINGS                           manifest key -> parameter

The counts are upper bounds: population "known" keeps only the facts the model knows, and a relation of PARAREL may
hold fewer facts than train_facts_per_relation; a count nothing bounds (all of PARAREL's facts) is not checked. What is
checked only grows with the counts, so a value refused at the bound fails at any real count. A learning-curve share
that the real (known) count leaves without a fact is skipped by chapter 4, which says so under its table
(kn.experiments.land_robustness.skipped_sizes_note).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from kn.base.errors import DataFileError, ParameterError
from kn.base.paper import PAPER_SCALE
from kn.base.params import StudyParams, project_root
from kn.book.build import _show
from kn.data import pararel
from kn.experiments.land_robustness import usable_fractions
from kn.methods.counterexamples import validation_count

STORE_SETTINGS = {"steps": "ig_steps", "rule": "ig_rule", "dtype": "ig_dtype", "threshold": "store_threshold",
                  "neuron": "ig_neuron"}
ATTRIBUTION_CHAPTER = "02_attribution"  # the one chapter that adds to the store with the run's settings


@dataclass(frozen=True)
class RunSizes:
    relations: list  # the run's relations where they are known (names), else one "" per relation
    train: list  # per relation: at most this many train facts (None: not bounded)
    test: list  # per relation: at most this many test facts (None: not bounded)
    facts_file: Path | None = None  # where the counts come from, if not from the parameters
    bound: bool = False  # population known: the model's known facts are fewer


def check_run(params: StudyParams, chapters=(), whole_run: bool = True) -> None:
    """Every check of this module, before any chapter of ``chapters`` (names as kn.book.runner.CHAPTERS) starts.
    ``whole_run`` False: the chapters were named, so chapters 1 and 2 alone (the GPU study's attribution ladder) skip
    the sizes that only chapters 4-6 need."""
    check_run_dir(params, chapters)
    sizes = run_sizes(params)  # own facts are read and checked whatever the chapters
    if whole_run or not chapters or set(chapters) - DATA_CHAPTERS:
        check_sizes(params, sizes)


DATA_CHAPTERS = {"01_data_adaptation", "02_attribution"}


def check_run_dir(params: StudyParams, chapters=()) -> None:
    run_dir = params.resolved_run_dir()
    for folder in (run_dir, *run_dir.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ParameterError(f"parameter run_dir={params.run_dir!r}: {_show(folder)} is a file, not a folder; "
                                     "give run_dir a folder (a missing one is made)")
            break
    manifest = run_dir / "attribution" / "manifest.json"
    if ATTRIBUTION_CHAPTER not in chapters or not manifest.is_file():
        return
    try:
        stored = json.loads(manifest.read_text())
    except ValueError:  # a damaged manifest: chapter 2's own error names it
        return
    differ = [(key, stored.get(field), getattr(params, key)) for field, key in STORE_SETTINGS.items()
              if stored.get(field) != getattr(params, key)]
    if differ:
        shown = ", ".join(f"{key}: store {a!r}, parameters {b!r}" for key, a, b in differ)
        raise ParameterError(f"{_show(manifest.parent)} holds scores computed with other attribution settings "
                             f"({shown}); chapter 2 would mix them: use the store's values, or choose another run "
                             "folder with `-p run_dir runs/NAME`")


def _bound(*limits):
    given = [n for n in limits if n is not None]
    return min(given) if given else None


def run_sizes(params: StudyParams) -> RunSizes:
    candidates = params.candidate_facts_per_relation if params.population == "known" else None
    train_limit = _bound(params.train_facts_per_relation, candidates)
    test_limit = _bound(params.test_facts_per_relation, candidates)
    known = params.population == "known"
    if not params.facts_file:
        if params.relations is not None:
            relations = sorted(set(params.relations))
        else:
            relations = [""] * min(params.n_relations or PAPER_SCALE["relations"], PAPER_SCALE["relations"])
        return RunSizes(relations, [train_limit] * len(relations), [test_limit] * len(relations), None, known)
    data = pararel.load_adapted(params)  # both files read and checked: every line, templates per relation
    path = Path(params.facts_file) if Path(params.facts_file).is_absolute() else project_root() / params.facts_file
    relations = pararel.choose_relations(data.facts, params)
    for relation in relations:
        objects = sorted(data.facts.loc[data.facts["relation"] == relation, "object"].unique())
        if len(objects) < 2:
            raise DataFileError(f"{path}: relation {relation} has one object ({objects[0]!r}) in all its facts; chapter "
                                "6 edits a fact towards another object of its relation: give it facts with two "
                                "objects or more")
    sample = pararel.sample_facts(data.facts, params, limits={"train": train_limit, "test": test_limit},
                                  relations=relations)
    counts = sample.groupby(["relation", "split"]).size().unstack(fill_value=0).reindex(
        index=relations, columns=["train", "test"], fill_value=0)
    return RunSizes(relations, counts["train"].tolist(), counts["test"].tolist(), path, known)


def check_sizes(params: StudyParams, sizes: RunSizes) -> None:
    if params.related_templates >= params.templates_per_relation:
        raise ParameterError(f"parameter related_templates={params.related_templates}: must be below "
                             f"templates_per_relation={params.templates_per_relation} (a test fact keeps one template "
                             "to identify its neurons on and holds out the others at most)")
    _check_pairing(params, sizes)
    _check_land(params, sizes)


def _relations_key(params: StudyParams, sizes: RunSizes) -> str:
    if params.relations is not None:
        return f"parameter relations={params.relations!r}"
    if params.n_relations is not None or sizes.facts_file is None:
        return f"parameter n_relations={params.n_relations!r}"
    return f"{sizes.facts_file}"


def _check_pairing(params: StudyParams, sizes: RunSizes) -> None:
    """Chapters 5 and 6 pair each test fact with unrelated_partners other test facts (kn.experiments.conditions)."""
    pairing = params.unrelated_pairing
    if pairing == "other_relation" and len(sizes.relations) < 2:
        what = f"one relation ({sizes.relations[0]})" if sizes.relations and sizes.relations[0] else "one relation"
        error = DataFileError if _relations_key(params, sizes) == str(sizes.facts_file) else ParameterError
        raise error(f"{_relations_key(params, sizes)}: {what}, but unrelated_pairing=other_relation tests each fact's "
                    "Unrelated prompts on facts of another relation: give two relations or more, or set "
                    "`unrelated_pairing: same_relation`")
    if any(n is None for n in sizes.test):
        return
    key = (f"parameter test_facts_per_relation={params.test_facts_per_relation}"
           if params.test_facts_per_relation in sizes.test else f"parameter test_fraction={params.test_fraction:g}")
    where = f" of {sizes.facts_file}" if sizes.facts_file else ""
    tested = [r or "a relation" for r, n in zip(sizes.relations, sizes.test) if n > 0]
    if not tested:
        raise ParameterError(f"{key}: no relation{where} gets a test fact; chapters 3-6 measure on test facts")
    if pairing == "other_relation" and len(tested) < 2:
        raise ParameterError(f"{key}: only {tested[0]}{where} gets test facts, and unrelated_pairing=other_relation "
                             "pairs each test fact with one of another relation")
    single = [r for r, n in zip(sizes.relations, sizes.test) if n == 1]
    if pairing == "same_relation" and single:
        which = ", ".join(single[:3]) + (" ..." if len(single) > 3 else "") if single[0] else "each relation"
        raise ParameterError(f"{key}: {which}{where} gets one test fact, and "
                             "unrelated_pairing=same_relation pairs each test fact with another of its relation: "
                             "give two test facts per relation or more, or set `unrelated_pairing: other_relation`")
    if pairing == "any" and sum(sizes.test) < 2:
        raise ParameterError(f"{key}: the run gets one test fact, and unrelated_pairing=any pairs it with another")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _check_land(params: StudyParams, sizes: RunSizes) -> None:
    """Chapter 4 holds out validation facts per relation (kn.methods.counterexamples.validation_split), fits LAND on
    the rest and draws the learning curve's shares of those (kn.methods.detectors.nested_fact_samples)."""
    if not sizes.train or any(n is None for n in sizes.train):
        return
    share = params.land_validation_fraction
    held = [validation_count(n, share) for n in sizes.train]
    fit, total = sum(sizes.train) - sum(held), sum(sizes.train)
    at_most = "at most " if sizes.bound else ""
    counted = (f"{_n(len(sizes.train), 'relation')} x {at_most}{_n(sizes.train[0], 'train fact')}, less "
               f"{_n(held[0], 'validation fact')} each" if len(set(sizes.train)) == 1 else
               f"{at_most}{total} train facts of {len(sizes.train)} relations, less {_n(sum(held), 'validation fact')}")
    counted += f", land_validation_fraction={share:g}"
    source = (f"parameter train_facts_per_relation={params.train_facts_per_relation}"
              if params.train_facts_per_relation in sizes.train else f"{sizes.facts_file or 'the data'}")
    if not any(held):
        raise ParameterError(f"{source}: no relation has two train facts, so chapter 4 has no validation fact to "
                             "choose LAND's read-out on; give a relation two train facts or more")
    if fit == 0:
        raise ParameterError(f"parameter land_validation_fraction={share:g}: holds out every train fact ({counted}), "
                             "which leaves no train fact to fit LAND on; use a smaller share")
    if params.land_operating_point == "fact_specific" and params.land_threshold is None and max(held) < 2:
        raise ParameterError("parameter land_operating_point='fact_specific': chooses P on the fact-specific overlap "
                             f"of two validation facts of one relation, and none holds out two ({counted}); give a "
                             "relation four train facts or more, or set land_threshold")
    fractions = list(params.learning_curve_fractions)
    usable = usable_fractions(fractions, fit)
    too_small = [f for f in fractions if f not in usable]
    if too_small:
        smallest = math.ceil(1e4 / fit) / 1e4  # 1 / fit, rounded up so that the share holds one fact
        raise ParameterError(f"parameter learning_curve_fractions={fractions!r}: a share of {min(too_small):g} of the "
                             f"{at_most}{fit} facts LAND is fitted on ({counted}) leaves no fact; the smallest share "
                             f"that works is {smallest:g}")

"""kn.book.summaries: what each chapter records in its run folder, as typed records, read back by later chapters and the
results page.

API
    DataSummary, AttributionSummary, ChoicesSummary, OverlapSummary, LandSummary, AmplificationSummary,
    EditingSummary                          one frozen dataclass per chapter (SUMMARIES: all of them)
    <Summary>.write(run) / <Summary>.read(run) -> <Summary>   JSON in run folder file <Summary>.FILE, typed both ways
    <Summary>.exists(run) -> bool
    Claim(name, sentence, interval, holds)  a verdict: one sentence, the interval it rests on, and whether the paper's
                                            claim holds here (True / False / None = not distinguishable here)

Fields hold numbers, kn.base.stats.Interval values, Claims, and dicts or lists of them; reading checks that the file has
exactly the record's fields, so a renamed key fails loudly instead of reading as missing.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass

from kn.base.stats import Interval, Rate


@dataclass(frozen=True)
class Claim:
    name: str  # short: "LAND beats the relation prior"
    sentence: str  # the verdict, with its interval
    interval: Interval | None = None
    holds: bool | None = None  # None: not distinguishable here
    family: str = ""  # a declared family of primary contrasts (Holm-corrected within it); "" exploratory
    p_value: float | None = None  # the test's p (McNemar exact, or the cluster bootstrap's)
    p_holm: float | None = None  # Holm-adjusted within the family; a primary claim holds only when this is < 0.05
    direction: str = ""  # a primary contrast: "higher" or "lower" is better (on Unrelated, lower); holds True
    # then means the contrast favours A, False that it favours B


def _encode(value):
    if isinstance(value, Interval):
        return {"__interval__": value.as_dict()}
    if dataclasses.is_dataclass(value):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return value


def _decode(value, hint):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _decode(value, inner)
    if hint is Interval:
        return Interval.from_dict(value["__interval__"])
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{k: _decode(v, hints[k]) for k, v in value.items()})
    if origin is dict:
        _, inner = typing.get_args(hint)
        return {k: _decode(v, inner) for k, v in value.items()}
    if origin is list:
        (inner,) = typing.get_args(hint)
        return [_decode(v, inner) for v in value]
    if hint is float and value is None:
        return float("nan")
    return value


class _Summary:
    FILE = ""

    def write(self, run) -> None:
        run.write_json(self.FILE, _encode(self))

    @classmethod
    def read(cls, run) -> "_Summary":
        raw = run.read_json(cls.FILE, chapter=cls.CHAPTER)
        names = {f.name for f in dataclasses.fields(cls)}
        if set(raw) != names:
            raise ValueError(f"{run.path / (cls.FILE + '.json')}: fields {sorted(set(raw) ^ names)} differ from "
                             f"{cls.__name__}'s: re-run {cls.CHAPTER}")
        hints = typing.get_type_hints(cls)
        return cls(**{k: _decode(v, hints[k]) for k, v in raw.items()})

    @classmethod
    def exists(cls, run) -> bool:
        return run.has(f"{cls.FILE}.json")


@dataclass(frozen=True)
class DataSummary(_Summary):
    FILE: typing.ClassVar[str] = "data_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 1 (01_data_adaptation)"
    model: str
    model_identity: str
    counts: dict  # kn.data.pararel.AdaptedData.summary(): the data before sampling
    population: str  # all | known
    known_rule: str  # "" for all
    candidate_facts: int
    known_candidate_facts: int
    dropped_relations: list[str]  # too few known facts for a train and a test side
    sample_relations: int
    sample_facts_train: int
    sample_facts_test: int
    sample_prompts: int
    shared_prompt_rows: int  # rows whose (prompt, answer) another relation's row repeats
    shared_prompts_split_mismatch: int  # of those, pairs on both sides of the split (must be 0)
    top1_accuracy: Interval  # per fact mean of top-1 hits, over the run's facts
    multi_token_answer_share: float
    claims: list[Claim]
    seconds: float
    top1_rate: Rate | None = None  # top-1 hits over the run's prompts, exact interval
    known_rate: Rate | None = None  # known facts among the candidates (known population), exact interval


@dataclass(frozen=True)
class AttributionSummary(_Summary):
    FILE: typing.ClassVar[str] = "attribution_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 2 (02_attribution)"
    prompts: int
    stored: int
    computed_now: int
    seconds_per_prompt: float
    threads: int
    batch_prompts: int
    rule: str
    steps: int
    neuron: str
    mean_coarse_size: float
    median_coarse_size: float
    completeness_mean_abs_gap: float
    completeness_mean_delta: float
    claims: list[Claim]
    seconds: float


@dataclass(frozen=True)
class ChoicesSummary(_Summary):
    FILE: typing.ClassVar[str] = "choices_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 2b (02b_attribution_choices)"
    prompts: int
    reference: str  # how the converged reference was computed
    reference_points: float  # mean integrand evaluations per layer and prompt
    convergence: list[dict]  # rows: rule, steps, max_rel_error, completeness_gap, jaccard_reference, jaccard_paper...
    slow_layers: list[int]
    share_max_in_slow_layer: float
    definitions_jaccard: Interval  # coarse sets of the two neuron definitions
    definition_drop: dict[str, Interval]  # definition -> drop of P(answer) when its top-k are suppressed
    definition_difference: Interval  # paper's minus pre-activation drop, paired over prompts
    claims: list[Claim]
    seconds: float


@dataclass(frozen=True)
class OverlapSummary(_Summary):
    FILE: typing.ClassVar[str] = "overlap_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 3 (03_overlap)"
    table4_test: dict[str, Interval]  # N_s, N_u, N_so, R_so, N_uo, R_uo, R_uo_eq5 over test facts
    table4_all: dict[str, Interval]  # the same over every fact of the run
    r_uo_eq5_pooled_test: float
    refined_per_fact: Interval
    intra_relation: float
    inter_relation: float
    p_used: dict[str, float]
    refined_size: dict[str, float]
    size_range_missed: list[str]
    sweep: list[dict]
    claims: list[Claim]
    seconds: float


@dataclass(frozen=True)
class LandSummary(_Summary):
    FILE: typing.ClassVar[str] = "land_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 4 (04_land)"
    n_layers: int
    n_neurons: int
    rank: int
    n_parameters: int
    train_pairs: int
    threshold: float | None  # P of the main sets; None for the ratio read-out (each prompt's top ratio x |coarse set|)
    threshold_reason: str
    validation_sweep: list[dict]
    final_loss: float
    table7: dict[str, Interval]  # N_s, N_so, R_so (coarse), N_L, N_Lo, R_Lo (LAND), on test facts
    detectors: dict[str, dict[str, Interval]]  # method -> size, within, across_*, fact_specific
    constant_k: int
    learning_curve: list[dict]
    wordings: dict[str, dict[str, Interval]]  # "condition / method" -> metric -> Interval
    claims: list[Claim]
    seconds: float
    operating_rule: str = ""  # the main sets' read-out (paper_ratio: the paper's N_L / N_s)
    seed_points: list[dict] = dataclasses.field(default_factory=list)  # per (rule, method): means and spread over seeds
    seed_holds: list[dict] = dataclasses.field(default_factory=list)  # per (rule, verdict): at every seed or not
    consistency: list[dict] = dataclasses.field(default_factory=list)  # per class: share of facts, LAND's gain


@dataclass(frozen=True)
class AmplificationSummary(_Summary):
    FILE: typing.ClassVar[str] = "amplification_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 5 (05_amplification)"
    facts: int
    set_sizes: dict[str, float]
    amplify: dict[str, dict[str, Interval]]  # method -> condition -> change rate (median inside)
    suppress: dict[str, dict[str, Interval]]
    claims: list[Claim]
    seconds: float
    log_ratio: dict[str, dict[str, Interval]] = dataclasses.field(default_factory=dict)  # mean log(P_after/P_before)
    power: list[dict] = dataclasses.field(default_factory=list)  # per primary claim: the paper's effect, n needed
    probes: dict[str, int] = dataclasses.field(default_factory=dict)  # probes per fact and condition


@dataclass(frozen=True)
class EditingSummary(_Summary):
    FILE: typing.ClassVar[str] = "editing_summary"
    CHAPTER: typing.ClassVar[str] = "chapter 6 (06_editing)"
    facts: int
    success: dict[str, dict[str, Interval]]  # method (incl. Before) -> condition -> success rate
    changed_same: dict[str, Interval]  # Dai's change rate, method -> share of Same prompts whose top-1 moved
    ppl_within_relative: dict[str, Interval]
    ppl_across_relative: dict[str, Interval]
    ppl_within_change: dict[str, Interval]
    ppl_across_change: dict[str, Interval]
    erasing: list[dict]
    claims: list[Claim]
    seconds: float
    rates: dict[str, dict[str, Rate]] = dataclasses.field(default_factory=dict)  # exact, over every probe outcome
    contrasts: list[dict] = dataclasses.field(default_factory=list)  # the primary family: McNemar, Holm
    specificity: dict[str, Interval] = dataclasses.field(default_factory=dict)  # Same minus Unrelated (net of Before)
    variants: dict[str, dict[str, dict[str, Rate]]] = dataclasses.field(default_factory=dict)  # "top 5", "scaled λ"
    power: list[dict] = dataclasses.field(default_factory=list)
    probes: dict[str, int] = dataclasses.field(default_factory=dict)


SUMMARIES = (DataSummary, AttributionSummary, ChoicesSummary, OverlapSummary, LandSummary, AmplificationSummary,
             EditingSummary)

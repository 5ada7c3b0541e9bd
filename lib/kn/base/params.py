"""kn.base.params: the study's parameters as one typed, frozen config.

API
    StudyParams                      frozen dataclass; every key a notebook's `parameters` cell may hold
    StudyParams.from_mapping(d)      reject unknown keys and bad values (ParameterError names the key)
    StudyParams.help(key) -> str     the one-line meaning of a key (the comment beside it in the notebooks)
    StudyParams.check_device()       ParameterError when device names a CUDA device this machine lacks
    CHAPTER_KEYS                     {chapter: keys its parameters cell lists}
    project_root() -> Path           the checkout (relative run folders and params files start there)
    DEFAULT_PARAMS_FILE, ParameterError

The same keys are the notebooks' papermill parameters; `params/<model>.yaml` and `kn ... -p KEY VALUE` override the
defaults. Every field carries its meaning in ``metadata["help"]``; the notebooks' parameters cells are generated from
it (a test keeps them in step).
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from kn.base.errors import ParameterError

DEFAULT_PARAMS_FILE = "params/smollm2-135m.yaml"  # the book's default run; relative to the project root


def _p(default, help: str, *, factory: bool = False):
    if factory:
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class StudyParams:
    # --- model and run -----------------------------------------------------
    model: str = _p("smollm2-135m", "embedded smollm2-135m or gemma3-270m, a Hugging Face id, a local folder, or tiny-*")
    run_dir: str = _p("", "run folder; empty: runs/<model>; relative paths start at the project root")
    data_dir: str = _p("", "PARAREL folder; empty: $KN_DATA_DIR, else the download cache")
    device: str = _p("auto", "auto | cpu | cuda | cuda:N")
    dtype: str = _p("float32", "dtype of the model weights: float32 | bfloat16 | float16")
    seed: int = _p(0, "one seed for every draw (split, samples, designs, training)")
    # --- data (chapter 1) ----------------------------------------------------
    facts_file: str = _p("", "your own facts (CSV or JSON lines: relation, subject, object); empty: PARAREL")
    templates_file: str = _p("", "your own templates (relation, template, provenance); needed with facts_file")
    templates_per_relation: int = _p(10, "templates (paraphrases) per relation after adaptation")
    test_fraction: float = _p(0.1, "share of the facts of each relation in the test split")
    relations: list[str] | None = _p(None, "explicit relation ids; null -> all (or n_relations of them)")
    n_relations: int | None = _p(None, "a seeded sample of this many relations; null -> all")
    train_facts_per_relation: int | None = _p(None, "a seeded sample of train facts per relation; null -> all")
    test_facts_per_relation: int | None = _p(None, "a seeded sample of test facts per relation; null -> all")
    population: str = _p("all", "all: every fact (the papers); known: facts the model knows (rule below)")
    known_max_rank: int = _p(0, "known: the first answer token ranks at most this (0 is top-1) ...")
    known_min_templates: int = _p(1, "... on at least this many templates of the fact")
    candidate_facts_per_relation: int | None = _p(None, "known: facts per relation and split scored for the rule; null -> all")
    eval_batch_size: int = _p(32, "prompts per forward pass when scoring")
    # --- attribution (chapter 2) -------------------------------------------
    ig_steps: int = _p(20, "m, the integrated-gradients points (the papers: 20)")
    ig_rule: str = _p("right", "right: alphas k/m, k in 1..m (the paper); left: k in 0..m-1 (Dai et al.); "
                               "gauss_legendre; adaptive (converged, chapter 2b)")
    ig_dtype: str = _p("float32", "compute dtype of attribution")
    ig_neuron: str = _p("ffn_out_input", "ffn_out_input: input of the FFN output projection (the papers); pre_activation")
    store_threshold: float = _p(0.05, "stored scores keep every neuron above this fraction of the prompt maximum")
    coarse_threshold: float = _p(0.2, "t: the coarse set of a prompt is score > t x its maximum (GPT-2 0.3, Llama 0.2)")
    shard_index: int = _p(0, "the shard of the prompts this job scores (scale-out)")
    shard_count: int = _p(1, "number of shards")
    # --- attribution choices (chapter 2b) ------------------------------------
    convergence_prompts: int = _p(50, "prompts of the quadrature and neuron-definition study")
    convergence_steps: list[int] = _p((1, 2, 4, 8, 20, 50, 100), "m values compared per rule", factory=True)
    convergence_tolerance: float = _p(1e-3, "target error of the reference, relative to the largest score of the prompt")
    convergence_panels: int = _p(25, "starting panels of the reference on [0, 1] (each sampled at 5 points), refined")
    definition_top_k: int = _p(20, "neurons suppressed per definition in the causal check")
    # --- overlap (chapter 3) -------------------------------------------------
    refine_threshold: float = _p(0.2, "t of the coarse sets Knowledge-Neurons refining starts from (Dai: 0.2)")
    refine_p_start: float = _p(0.7, "refining: the sharing fraction p starts here (Dai: 0.7) ...")
    refine_p_step: float = _p(0.05, "... and moves by this step per relation (Dai: 0.05) ...")
    refine_size_range: list[float] = _p((2.0, 5.0), "... until the mean refined size of the relation lies here", factory=True)
    threshold_sweep: list[float] = _p((0.1, 0.2, 0.3, 0.4, 0.5), "coarse thresholds t of the overlap sweep", factory=True)
    example_fact: str = _p("", "fact shown in the case tables; empty: the test fact answered best")
    # --- LAND (chapter 4) -----------------------------------------------------
    land_rank: int = _p(64, "R, the rank of the detector per layer")
    land_epochs: int = _p(3, "training epochs (the paper: 3)")
    land_batch_size: int = _p(8, "batch size (the paper: 8)")
    land_lr: float = _p(1e-4, "learning rate (the paper: 1e-4; it names no optimiser, we use Adam)")
    land_threshold: float | None = _p(None, "P, on the count scale of the targets; null: chosen on validation facts")
    land_threshold_grid: list[float] = _p((0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0), "P values tried on validation facts",
                                          factory=True)
    land_validation_fraction: float = _p(0.2, "share of the train facts of each relation held out to choose P")
    land_min_set_size: float = _p(2.0, "P is chosen among values whose sets hold this many neurons on average")
    land_counterexamples: int = _p(2, "other facts whose same-template prompts are counter-examples")
    learning_curve_fractions: list[float] = _p((0.125, 0.25, 0.5, 1.0), "shares of the train facts in the learning curve",
                                               factory=True)
    land_counterexample_rule: str = _p("same_template", "counter-examples: same_template (per prompt, land_counterexamples "
                                                        "prompts of its template and other facts) | whole_union (every "
                                                        "template of land_counterexamples other facts)")
    land_operating_point: str = _p("paper_ratio", "P of the main LAND sets, chosen on validation facts: paper_ratio | "
                                                  "max_within | fact_specific")
    land_operating_ratio: float = _p(1.17, "paper_ratio: sets of this many times N_s (the paper: GPT-2 1.17, "
                                           "Llama-3.2-1B 1.24)")
    land_seeds: list[int] = _p((0, 1, 2, 3, 4), "seeds of the detector pipeline (validation split, counter-examples, "
                                                "initialisation)", factory=True)
    land_curve_seeds: int = _p(3, "seeds per size of the learning curve (the first of land_seeds)")
    land_counterexample_ablation: list[int] = _p((0, 1, 2, 5), "k of the same_template counter-example ablation",
                                                 factory=True)
    land_consistency_score: str = _p("intersection_over_union", "Chen et al. consistency score: intersection_over_union | "
                                                                "mean_pairwise_jaccard")
    land_consistency_threshold: float | None = _p(None, "facts scoring above it are consistent; null: Otsu threshold on "
                                                        "the train facts")
    # --- amplification and editing (chapters 5, 6) ------------------------------
    unrelated_pairing: str = _p("other_relation", "Unrelated tests on a fact of: other_relation | same_relation | any")
    related_templates: int = _p(3, "held-out templates per test fact that test Related (no method sees them)")
    unrelated_partners: int = _p(3, "other test facts per fact that test Unrelated (answers of another type, never the new answer)")
    edit_matched_sizes: list[int] = _p((5,), "k of the matched-size edits (the top-k neurons of every method by attribution), "
                                             "beside k as the mean size of LAND sets", factory=True)
    amplify_factor: float = _p(2.0, "activations x this to amplify")
    suppress_factor: float = _p(0.0, "activations x this to suppress")
    bootstrap_samples: int = _p(1000, "bootstrap resamples of every interval")
    edit_lambda1: float = _p(2.0, "weight of the old answer embedding removed from each value vector")
    edit_lambda2: float = _p(2.0, "weight of the new answer embedding added")
    edit_scaled: bool = _p(False, "as the code of Dai et al.: lambdas times ||v|| / ||e||")
    ppl_statements: int = _p(20, "statements per relation for perplexity")
    erase_top_k: int = _p(10, "most common refined neurons of a relation zeroed when erasing it")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def help(cls, key: str) -> str:
        return {f.name: f.metadata["help"] for f in dataclasses.fields(cls)}[key]

    @classmethod
    def from_mapping(cls, values: typing.Mapping, *, source: str = "parameters") -> "StudyParams":
        return cls(**_checked(values, source))

    def __post_init__(self):
        def bad(key, why):
            raise ParameterError(f"parameter {key}={getattr(self, key)!r}: {why}")

        if not self.model:
            bad("model", "must name a model")
        if self.seed < 0:
            bad("seed", "must be 0 or more (the seeds of numpy and torch are non-negative)")
        if self.relations is not None and not self.relations:
            bad("relations", "must name at least one relation (or be null for all)")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            bad("device", "use auto, cpu, cuda or cuda:N")
        for key in ("dtype", "ig_dtype"):
            if getattr(self, key) not in ("float32", "bfloat16", "float16"):
                bad(key, "use float32, bfloat16 or float16")
        if bool(self.facts_file) != bool(self.templates_file):
            bad("facts_file", "give facts_file and templates_file together")
        if self.templates_per_relation < 2:
            bad("templates_per_relation", "needs at least 2 paraphrases per fact")
        if not 0.0 < self.test_fraction < 1.0:
            bad("test_fraction", "must lie strictly between 0 and 1")
        if self.relations is not None and self.n_relations is not None:
            bad("n_relations", "give either relations or n_relations, not both")
        for key in ("n_relations", "train_facts_per_relation", "test_facts_per_relation", "candidate_facts_per_relation"):
            value = getattr(self, key)
            if value is not None and value < 1:
                bad(key, "must be at least 1 (or null for all)")
        if self.population not in ("all", "known"):
            bad("population", "use all or known")
        if self.known_max_rank < 0:
            bad("known_max_rank", "must be 0 (top-1) or more")
        if not 1 <= self.known_min_templates <= self.templates_per_relation:
            bad("known_min_templates", f"must lie in 1..templates_per_relation={self.templates_per_relation}")
        if self.eval_batch_size < 1:
            bad("eval_batch_size", "must be at least 1")
        if self.ig_steps < 1:
            bad("ig_steps", "must be at least 1")
        if self.ig_rule not in ("right", "left", "gauss_legendre", "adaptive"):
            bad("ig_rule", "use right (k = 1..m), left (k = 0..m-1), gauss_legendre or adaptive")
        if self.ig_neuron not in ("ffn_out_input", "pre_activation"):
            bad("ig_neuron", "use ffn_out_input (the papers) or pre_activation")
        if not 0.0 < self.store_threshold <= self.coarse_threshold:
            bad("store_threshold", "must be > 0 and not above coarse_threshold")
        for key in ("coarse_threshold", "refine_threshold"):
            if not self.store_threshold <= getattr(self, key) < 1.0:
                bad(key, f"must lie in [store_threshold={self.store_threshold}, 1)")
        if any(not self.store_threshold <= t < 1.0 for t in self.threshold_sweep) or not self.threshold_sweep:
            bad("threshold_sweep", f"every t must lie in [store_threshold={self.store_threshold}, 1)")
        if self.convergence_prompts < 0:
            bad("convergence_prompts", "must be 0 or more")
        if not self.convergence_steps or min(self.convergence_steps) < 1:
            bad("convergence_steps", "needs m values >= 1")
        if not 0 < self.convergence_tolerance < 0.1:
            bad("convergence_tolerance", "must lie in (0, 0.1)")
        if self.convergence_panels < 1:
            bad("convergence_panels", "must be at least 1")
        if self.definition_top_k < 1:
            bad("definition_top_k", "must be at least 1")
        if not 0 < self.refine_p_start < 1 or not 0 < self.refine_p_step < 0.5:
            bad("refine_p_start", "p must start in (0, 1) and move by a step in (0, 0.5)")
        if len(self.refine_size_range) != 2 or not 0 < self.refine_size_range[0] <= self.refine_size_range[1]:
            bad("refine_size_range", "give [low, high] with 0 < low <= high")
        for key in ("land_rank", "land_epochs", "land_batch_size"):
            if getattr(self, key) < 1:
                bad(key, "must be at least 1")
        if not self.land_lr > 0:
            bad("land_lr", "must be positive")
        if self.land_threshold is not None and self.land_threshold < 0:
            bad("land_threshold", "must be >= 0 (or null: chosen on validation facts)")
        if not self.land_threshold_grid or min(self.land_threshold_grid) < 0:
            bad("land_threshold_grid", "needs values >= 0")
        if not 0 < self.land_validation_fraction < 1:
            bad("land_validation_fraction", "must lie strictly between 0 and 1")
        if self.land_min_set_size < 0:
            bad("land_min_set_size", "must be 0 or more")
        if self.land_counterexamples < 0:
            bad("land_counterexamples", "must be 0 or more")
        if not self.learning_curve_fractions or not all(0 < f <= 1 for f in self.learning_curve_fractions):
            bad("learning_curve_fractions", "every share must lie in (0, 1]")
        if self.land_counterexample_rule not in ("same_template", "whole_union"):
            bad("land_counterexample_rule", "must be same_template or whole_union")
        if self.land_operating_point not in ("paper_ratio", "max_within", "fact_specific"):
            bad("land_operating_point", "must be paper_ratio, max_within or fact_specific")
        if not self.land_operating_ratio > 0:
            bad("land_operating_ratio", "must be positive")
        if not self.land_seeds or len(set(self.land_seeds)) != len(self.land_seeds) or min(self.land_seeds) < 0:
            bad("land_seeds", "needs distinct seeds >= 0")
        if self.land_curve_seeds < 1:
            bad("land_curve_seeds", "must be at least 1")
        if not self.land_counterexample_ablation or min(self.land_counterexample_ablation) < 0:
            bad("land_counterexample_ablation", "needs k >= 0")
        if self.land_consistency_score not in ("intersection_over_union", "mean_pairwise_jaccard"):
            bad("land_consistency_score", "use intersection_over_union or mean_pairwise_jaccard")
        if self.land_consistency_threshold is not None and not 0 <= self.land_consistency_threshold <= 1:
            bad("land_consistency_threshold", "must lie in [0, 1] or be null")
        if self.unrelated_pairing not in ("other_relation", "same_relation", "any"):
            bad("unrelated_pairing", "use other_relation, same_relation or any")
        if self.related_templates < 1:  # a fact with fewer templates holds out all but its identification one
            bad("related_templates", "must be at least 1")
        if self.unrelated_partners < 1:
            bad("unrelated_partners", "must be at least 1")
        if not self.edit_matched_sizes or min(self.edit_matched_sizes) < 1:
            bad("edit_matched_sizes", "needs sizes >= 1")
        if self.amplify_factor < 0 or self.suppress_factor < 0:
            bad("amplify_factor", "factors must be >= 0")
        if self.ppl_statements < 1 or self.erase_top_k < 1:
            bad("ppl_statements", "ppl_statements and erase_top_k must be at least 1")
        if self.bootstrap_samples < 100:
            bad("bootstrap_samples", "use at least 100")
        if self.shard_count < 1 or not 0 <= self.shard_index < self.shard_count:
            bad("shard_index", f"must lie in 0..shard_count-1 (shard_count={self.shard_count})")

    # --- derived -----------------------------------------------------------
    @property
    def model_slug(self) -> str:
        return self.model.rstrip("/").split("/")[-1].lower().replace(".", "-") if "/" in self.model else self.model

    def resolved_run_dir(self) -> Path:
        """run_dir, relative paths taken from the project root (papermill runs notebooks in notebooks/)."""
        path = Path(self.run_dir) if self.run_dir else Path("runs") / self.model_slug
        return path if path.is_absolute() else project_root() / path

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch  # torch only where tensors are made: importing this module stays cheap

        return "cuda" if torch.cuda.is_available() else "cpu"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def check_device(self) -> None:
        """Refuse a CUDA device this machine does not have, before any model loads."""
        if not self.device.startswith("cuda"):
            return
        import torch  # heavy: only when a CUDA device is asked for

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(self.device.split(":")[1]) if ":" in self.device else 0
        if index >= count:
            have = (f"{count} CUDA device(s)" if count else
                    "no CUDA device" + (" (this torch is a CPU build)" if torch.version.cuda is None else ""))
            raise ParameterError(f"parameter device={self.device!r}: this machine has {have}; use auto or cpu")


def project_root() -> Path:
    """The checkout holding lib/kn (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[3]  # lib/kn/base/params.py
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def _checked(values: typing.Mapping, source: str) -> dict:
    """``values`` with every key known and every value of its field's type (ints accepted for floats)."""
    if not isinstance(values, typing.Mapping):
        raise ParameterError(f"{source}: expected a mapping of parameter names to values, got {type(values).__name__}")
    unknown = sorted(set(values) - set(StudyParams.keys()))
    if unknown:
        raise ParameterError(f"{source}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(StudyParams.keys())}")
    hints = typing.get_type_hints(StudyParams)
    return {key: _check_type(key, value, hints[key], source) for key, value in values.items()}


def _check_type(key: str, value, hint, source: str):
    def fail():
        raise ParameterError(f"{source}: parameter {key}={value!r} has type {type(value).__name__}, expected {_name(hint)}")

    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _check_type(key, value, inner, source)
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, (list, tuple)):
            fail()
        return [_check_type(key, v, item, source) for v in value]
    if hint is bool:
        if not isinstance(value, bool):
            fail()
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            fail()
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail()
        if not math.isfinite(value):  # YAML's .nan and .inf are floats, and no parameter means anything by them
            raise ParameterError(f"{source}: parameter {key}={value!r} must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unhandled type {hint} for {key}")  # a programming error in StudyParams


# Which keys each chapter's parameters cell lists (all keys stay accepted by every chapter).
_RUN_KEYS = ("model", "run_dir", "data_dir", "device", "dtype", "seed")
_DATA_KEYS = ("facts_file", "templates_file", "templates_per_relation", "test_fraction", "relations", "n_relations",
              "train_facts_per_relation", "test_facts_per_relation", "population", "known_max_rank",
              "known_min_templates", "candidate_facts_per_relation")
CHAPTER_KEYS: dict[str, tuple[str, ...]] = {
    "01_data_adaptation": _RUN_KEYS + _DATA_KEYS + ("eval_batch_size",),
    "02_attribution": _RUN_KEYS + ("ig_steps", "ig_rule", "ig_dtype", "ig_neuron", "store_threshold",
                                   "coarse_threshold", "shard_index", "shard_count"),
    "02b_attribution_choices": _RUN_KEYS + ("ig_steps", "ig_rule", "ig_dtype", "coarse_threshold",
                                            "convergence_prompts", "convergence_steps", "convergence_tolerance",
                                            "convergence_panels",
                                            "definition_top_k", "eval_batch_size"),
    "03_overlap": _RUN_KEYS + ("coarse_threshold", "refine_threshold", "refine_p_start", "refine_p_step",
                               "refine_size_range", "threshold_sweep", "example_fact", "bootstrap_samples"),
    "04_land": _RUN_KEYS + ("coarse_threshold", "land_rank", "land_epochs", "land_batch_size", "land_lr",
                            "land_threshold", "land_threshold_grid", "land_validation_fraction", "land_min_set_size",
                            "land_counterexamples", "learning_curve_fractions", "land_counterexample_rule",
                            "land_operating_point", "land_operating_ratio", "land_seeds", "land_curve_seeds",
                            "land_counterexample_ablation", "land_consistency_score", "land_consistency_threshold",
                            "example_fact", "bootstrap_samples"),
    "05_amplification": _RUN_KEYS + ("coarse_threshold", "refine_threshold", "unrelated_pairing", "related_templates",
                                     "unrelated_partners", "amplify_factor", "suppress_factor", "bootstrap_samples",
                                     "eval_batch_size"),
    "06_editing": _RUN_KEYS + ("coarse_threshold", "refine_threshold", "unrelated_pairing", "related_templates",
                               "unrelated_partners", "edit_lambda1", "edit_lambda2", "edit_scaled",
                               "edit_matched_sizes", "ppl_statements", "erase_top_k", "bootstrap_samples",
                               "eval_batch_size"),
}


def _name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")

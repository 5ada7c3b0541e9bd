"""kn.params: the study's parameters as one typed, frozen config.

API
    StudyParams                      frozen dataclass; every key a notebook's `parameters` cell may hold
    StudyParams.from_mapping(d)      reject unknown keys and bad values (ParameterError names the key)
    load_params(path)                a params/<model>.yaml file -> StudyParams
    params_from_namespace(ns)        the known keys of a notebook's globals -> StudyParams
    ParameterError

The same keys are the notebooks' papermill parameters; `params/<model>.yaml` overrides the defaults.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import yaml


class ParameterError(ValueError):
    pass


@dataclass(frozen=True)
class StudyParams:
    # --- model and run -----------------------------------------------------
    model: str = "smollm2-135m"  # embedded default, a Hugging Face id, a local folder, or tiny-gpt2/tiny-llama
    run_dir: str = ""  # "" -> runs/<model slug>; relative paths start at the project root
    data_dir: str = ""  # "" -> $KN_DATA_DIR, else the download cache
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "float32"  # weights' dtype for everything but attribution's compute dtype
    seed: int = 0
    # --- data adaptation (chapter 1) ----------------------------------------
    templates_per_relation: int = 10
    test_fraction: float = 0.1
    relations: list[str] | None = None  # explicit relation ids; None -> all 34 (or n_relations of them)
    n_relations: int | None = None  # a seeded sample of this many relations; None -> all
    train_facts_per_relation: int | None = None  # a seeded sample per relation; None -> all
    test_facts_per_relation: int | None = None
    eval_batch_size: int = 32
    # --- attribution (chapter 2) -------------------------------------------
    ig_steps: int = 20
    ig_rule: str = "right"  # right: k = 1..m (the paper's formula); left: k = 0..m-1 (Dai et al.'s code)
    ig_dtype: str = "float32"
    store_threshold: float = 0.05  # stored scores keep every neuron above this fraction of the prompt's max
    coarse_threshold: float = 0.2  # t: coarse set = score > t * max
    shard_index: int = 0
    shard_count: int = 1
    # --- overlap (chapter 3) -------------------------------------------------
    refine_threshold: float = 0.2  # coarse threshold of the sets Knowledge Neurons refining starts from (Dai et al.: 0.2)
    # --- LAND (chapter 4) -----------------------------------------------------
    land_rank: int = 64  # R
    land_epochs: int = 3
    land_batch_size: int = 8
    land_lr: float = 1e-4
    land_threshold: float = 1.0  # P, on the target's scale (how many of a fact's 10 coarse sets hold the neuron)
    land_counterexamples: int = 2  # other facts of the same relation whose same-template prompts are counter-examples
    # --- amplification and editing (chapters 5, 6) ------------------------------
    unrelated_pairing: str = "other_relation"  # Unrelated tests on a fact of: other_relation | same_relation | any
    amplify_factor: float = 2.0
    suppress_factor: float = 0.0
    bootstrap_samples: int = 1000
    edit_lambda1: float = 2.0  # weight of the old answer's embedding removed from each value vector
    edit_lambda2: float = 2.0  # weight of the new answer's embedding added
    edit_scaled: bool = False  # Dai et al.'s code: lambdas times ||v|| / ||e||
    ppl_statements: int = 20  # statements ("prompt answer") per group for perplexity
    erase_top_k: int = 10  # a relation's most common refined neurons zeroed when erasing it

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, values: typing.Mapping, *, source: str = "parameters") -> "StudyParams":
        if not isinstance(values, typing.Mapping):
            raise ParameterError(f"{source}: expected a mapping of parameter names to values, got {type(values).__name__}")
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise ParameterError(f"{source}: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(cls.keys())}")
        hints = typing.get_type_hints(cls)
        checked = {key: _check_type(key, value, hints[key], source) for key, value in values.items()}
        return cls(**checked)

    def __post_init__(self):
        def bad(key, why):
            raise ParameterError(f"parameter {key}={getattr(self, key)!r}: {why}")

        if not self.model:
            bad("model", "must name a model")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            bad("device", "use auto, cpu, cuda or cuda:N")
        for key in ("dtype", "ig_dtype"):
            if getattr(self, key) not in ("float32", "bfloat16", "float16"):
                bad(key, "use float32, bfloat16 or float16")
        if self.templates_per_relation < 2:
            bad("templates_per_relation", "needs at least 2 paraphrases per fact")
        if not 0.0 < self.test_fraction < 1.0:
            bad("test_fraction", "must lie strictly between 0 and 1")
        if self.relations is not None and self.n_relations is not None:
            bad("n_relations", "give either relations or n_relations, not both")
        for key in ("n_relations", "train_facts_per_relation", "test_facts_per_relation"):
            value = getattr(self, key)
            if value is not None and value < 1:
                bad(key, "must be at least 1 (or null for all)")
        if self.eval_batch_size < 1:
            bad("eval_batch_size", "must be at least 1")
        if self.ig_steps < 1:
            bad("ig_steps", "must be at least 1")
        if self.ig_rule not in ("right", "left"):
            bad("ig_rule", "use right (k = 1..m) or left (k = 0..m-1)")
        if not 0.0 < self.store_threshold <= self.coarse_threshold:
            bad("store_threshold", "must be > 0 and not above coarse_threshold")
        for key in ("coarse_threshold", "refine_threshold"):
            if not self.store_threshold <= getattr(self, key) < 1.0:
                bad(key, f"must lie in [store_threshold={self.store_threshold}, 1)")
        for key in ("land_rank", "land_epochs", "land_batch_size"):
            if getattr(self, key) < 1:
                bad(key, "must be at least 1")
        if not self.land_lr > 0:
            bad("land_lr", "must be positive")
        if self.land_counterexamples < 0:
            bad("land_counterexamples", "must be 0 or more")
        if self.unrelated_pairing not in ("other_relation", "same_relation", "any"):
            bad("unrelated_pairing", "use other_relation, same_relation or any")
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
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def project_root() -> Path:
    """The checkout holding lib/kn (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


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
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            fail()
        return value
    raise TypeError(f"unhandled type {hint} for {key}")  # a programming error in StudyParams


def _name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def load_params(path: str | Path) -> StudyParams:
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"params file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParameterError(f"{path}: not valid YAML: {err}") from err
    return StudyParams.from_mapping(values, source=str(path))


def params_from_namespace(namespace: typing.Mapping) -> StudyParams:
    """The StudyParams keys found in ``namespace`` (a notebook's ``globals()``); missing keys take their defaults."""
    return StudyParams.from_mapping({k: namespace[k] for k in StudyParams.keys() if k in namespace},
                                    source="notebook parameters")


__all__ = ["StudyParams", "ParameterError", "load_params", "params_from_namespace", "project_root"]

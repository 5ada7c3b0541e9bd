"""kn.pararel: PARAREL facts and templates, adapted to next-token (causal) models as LAND does.

API
    read_facts(data_dir) -> DataFrame[relation, fact_index, subject, object]        Dai et al.'s 34 relations
    drop_repeated_facts(facts) -> (facts, n_dropped)                                  (relation, subject, object) repeats
    read_templates(data_dir, relations) -> DataFrame[relation, position, template]   every PARAREL template
    is_y_final(template), prompt_stem(template, subject)
    adapt_templates(templates, authored_csv, n=10) -> DataFrame[relation, position, template, provenance]
    split_facts(facts, test_fraction, seed) -> facts with a `split` column (train/test), per relation, model-free
    sample_facts(facts, params) -> the seeded slice a run works on
    build_prompts(facts, templates) -> DataFrame: one row per (fact, template), with prompt and answer
    add_answer_tokens(prompts, tokenizer) -> + target_id, answer_n_tokens
    load_adapted(params) -> AdaptedData (all of the above, checked, for a run)
    DataFileError

Every reading error names the file and the line (or key) at fault.
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .download import DataFileError, resolve_data_dir
from .params import StudyParams, project_root

FACTS_PATH = Path("Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json")
PATTERNS_DIR = Path("pararel/patterns")
AUTHORED_TEMPLATES = Path("data/templates.csv")

_TRAILING_DOT = re.compile(r"\s*\.\s*$")


# --- reading -----------------------------------------------------------------
def read_facts(data_dir: str | Path) -> pd.DataFrame:
    """Dai et al.'s fact set: one row per (relation, subject, object), in file order (repeats kept)."""
    path = Path(data_dir) / FACTS_PATH
    if not path.is_file():
        raise DataFileError(f"fact file {path} is missing")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}: line {err.lineno}: not valid JSON ({err.msg})") from err
    if not isinstance(raw, dict):
        raise DataFileError(f"{path}: expected {{relation: [[subject, object], ...]}}, got {type(raw).__name__}")
    rows = []
    for relation, pairs in raw.items():
        if not re.fullmatch(r"P\d+", relation) or not isinstance(pairs, list):
            raise DataFileError(f"{path}: key {relation!r}: expected a relation id like P19 with a list of pairs")
        for index, pair in enumerate(pairs):
            if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(x, str) for x in pair)):
                raise DataFileError(f"{path}: {relation}[{index}]: expected [subject, object], got {pair!r}")
            subject, obj = pair
            if not subject.strip() or not obj.strip():
                raise DataFileError(f"{path}: {relation}[{index}]: empty label in {pair!r}")
            rows.append((relation, index, subject, obj))
    return pd.DataFrame(rows, columns=["relation", "fact_index", "subject", "object"])


def drop_repeated_facts(facts: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    kept = facts.drop_duplicates(["relation", "subject", "object"], keep="first").reset_index(drop=True)
    return kept, len(facts) - len(kept)


def read_templates(data_dir: str | Path, relations) -> pd.DataFrame:
    """All PARAREL templates of ``relations`` in file order; [X] and [Y] each required once."""
    rows = []
    for relation in relations:
        path = Path(data_dir) / PATTERNS_DIR / f"{relation}.jsonl"
        if not path.is_file():
            raise DataFileError(f"template file {path} is missing")
        position = 0
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{path}: line {lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{where}: not valid JSON ({err.msg})") from err
            if not isinstance(record, dict) or not isinstance(record.get("pattern"), str):
                raise DataFileError(f"{where}: expected an object with a string field 'pattern'")
            template = record["pattern"]
            _check_slots(template, where, require_y_final=False)
            rows.append((relation, position, template))
            position += 1
    return pd.DataFrame(rows, columns=["relation", "position", "template"])


def _check_slots(template: str, where: str, *, require_y_final: bool) -> None:
    if template.count("[X]") != 1:
        raise DataFileError(f"{where}: template {template!r} must contain [X] exactly once")
    if template.count("[Y]") != 1:
        raise DataFileError(f"{where}: template {template!r} must contain [Y] exactly once")
    if require_y_final and not is_y_final(template):
        raise DataFileError(f"{where}: template {template!r} must end with [Y] (a final '.' is allowed)")


# --- adaptation ---------------------------------------------------------------
def is_y_final(template: str) -> bool:
    """[Y] is the last token, ignoring a trailing " ." or "."."""
    return _TRAILING_DOT.sub("", template).rstrip().endswith("[Y]")


def prompt_stem(template: str, subject: str) -> str:
    """The prompt: [X] filled, [Y] and what follows removed, trailing space stripped."""
    if not is_y_final(template):
        raise ValueError(f"template {template!r} does not end with [Y]")
    head = _TRAILING_DOT.sub("", template).rstrip()[: -len("[Y]")]
    return head.replace("[X]", subject).rstrip()


def read_authored_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataFileError(f"template file {path} is missing")
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        need = {"relation", "position", "template", "provenance"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DataFileError(f"{path}: line 1: header must hold {sorted(need)}, got {reader.fieldnames}")
        rows = []
        for row in reader:
            where = f"{path}: line {reader.line_num}"
            if row["provenance"] not in ("pararel", "authored"):
                raise DataFileError(f"{where}: provenance {row['provenance']!r} must be pararel or authored")
            try:
                position = int(row["position"])
            except (TypeError, ValueError):
                raise DataFileError(f"{where}: position {row['position']!r} is not an integer") from None
            _check_slots(row["template"] or "", where, require_y_final=True)
            rows.append((row["relation"], position, row["template"], row["provenance"], reader.line_num))
    return pd.DataFrame(rows, columns=["relation", "position", "template", "provenance", "line"])


def adapt_templates(templates: pd.DataFrame, authored_csv: str | Path | None = None, n: int = 10) -> pd.DataFrame:
    """Each relation's first ``n`` [Y]-final PARAREL templates, topped up to ``n`` from the authored file.

    The file lists all ``n`` per relation; its pararel rows must equal what the rule selects, so the file
    cannot drift from the upstream data unnoticed."""
    path = Path(authored_csv) if authored_csv else project_root() / AUTHORED_TEMPLATES
    authored = read_authored_csv(path)
    out = []
    for relation, group in templates.groupby("relation", sort=True):
        selected = [t for t in group.sort_values("position")["template"] if is_y_final(t)][:n]
        listed = authored[authored["relation"] == relation].sort_values("position")
        listed_pararel = listed[listed["provenance"] == "pararel"]["template"].tolist()
        if listed_pararel != selected[: len(listed_pararel)] or len(listed_pararel) != len(selected):
            raise DataFileError(
                f"{path}: relation {relation}: its pararel rows {listed_pararel} differ from the [Y]-final "
                f"PARAREL templates {selected}")
        extra = listed[listed["provenance"] == "authored"]
        seen = {_normal(t) for t in selected}
        for template, line in zip(extra["template"], extra["line"]):
            if _normal(template) in seen:
                raise DataFileError(f"{path}: line {line}: {template!r} repeats another template of {relation}")
            seen.add(_normal(template))
        chosen = [(t, "pararel") for t in selected] + [(t, "authored") for t in extra["template"]]
        if len(chosen) < n:
            raise DataFileError(f"{path}: relation {relation} has {len(chosen)} templates, needs {n}: add authored rows")
        out += [(relation, i, t, p) for i, (t, p) in enumerate(chosen[:n])]
    return pd.DataFrame(out, columns=["relation", "position", "template", "provenance"])


def _normal(template: str) -> str:
    return " ".join(_TRAILING_DOT.sub("", template).lower().split())


# --- split and sample -----------------------------------------------------------
def _relation_rng(relation: str, seed: int, purpose: str) -> np.random.Generator:
    # One stream per (relation, purpose): sampling fewer relations never changes another relation's split.
    return np.random.default_rng([seed, zlib.crc32(relation.encode()), zlib.crc32(purpose.encode())])


def split_facts(facts: pd.DataFrame, test_fraction: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Seeded 9:1 (by default) train/test split by fact, within each relation; depends on nothing model-related."""
    facts = facts.copy()
    facts["split"] = "train"
    for relation, index in facts.groupby("relation").groups.items():
        order = _relation_rng(relation, seed, "split").permutation(len(index))
        n_test = int(round(test_fraction * len(index)))
        facts.loc[np.asarray(index)[order[:n_test]], "split"] = "test"
    return facts


def sample_facts(facts: pd.DataFrame, params: StudyParams) -> pd.DataFrame:
    """The run's slice: chosen relations, then a seeded sample of train and test facts per relation."""
    relations = sorted(facts["relation"].unique())
    if params.relations is not None:
        missing = sorted(set(params.relations) - set(relations))
        if missing:
            raise DataFileError(f"parameter relations: {missing} not among the {len(relations)} relations")
        relations = sorted(params.relations)
    elif params.n_relations is not None:
        order = np.random.default_rng(params.seed).permutation(len(relations))
        relations = sorted(relations[i] for i in order[: params.n_relations])
    parts = []
    for relation in relations:
        group = facts[facts["relation"] == relation]
        for split, limit in (("train", params.train_facts_per_relation), ("test", params.test_facts_per_relation)):
            chunk = group[group["split"] == split]
            if limit is not None and limit < len(chunk):
                pick = _relation_rng(relation, params.seed, f"sample-{split}").permutation(len(chunk))[:limit]
                chunk = chunk.iloc[np.sort(pick)]
            parts.append(chunk)
    return pd.concat(parts).sort_values(["relation", "fact_index"]).reset_index(drop=True)


# --- prompts ------------------------------------------------------------------------
def build_prompts(facts: pd.DataFrame, templates: pd.DataFrame) -> pd.DataFrame:
    """One row per (fact, template): relation, fact_id, subject, object, split, template_position, template,
    provenance, prompt, answer (" " + object: the next-token continuation)."""
    merged = facts.merge(templates.rename(columns={"position": "template_position"}), on="relation")
    merged["fact_id"] = merged["relation"] + ":" + merged["fact_index"].astype(str)
    merged["prompt"] = [prompt_stem(t, s) for t, s in zip(merged["template"], merged["subject"])]
    merged["answer"] = " " + merged["object"]
    columns = ["relation", "fact_id", "fact_index", "subject", "object", "split", "template_position", "template",
               "provenance", "prompt", "answer"]
    return merged[columns].sort_values(["relation", "fact_index", "template_position"]).reset_index(drop=True)


def add_answer_tokens(prompts: pd.DataFrame, tokenizer) -> pd.DataFrame:
    """target_id: the answer's first token (no special tokens); answer_n_tokens: how many tokens it has."""
    answers = prompts["answer"].unique().tolist()
    encoded = dict(zip(answers, tokenizer(answers, add_special_tokens=False)["input_ids"]))
    prompts = prompts.copy()
    prompts["target_id"] = [encoded[a][0] for a in prompts["answer"]]
    prompts["answer_n_tokens"] = [len(encoded[a]) for a in prompts["answer"]]
    return prompts


@dataclass
class AdaptedData:
    data_dir: Path
    facts_raw: pd.DataFrame  # Dai et al.'s set as read
    facts: pd.DataFrame  # repeats dropped, with split
    n_repeats_dropped: int
    templates_all: pd.DataFrame  # every PARAREL template of the 34 relations
    templates: pd.DataFrame  # adapted: n per relation, with provenance
    sample: pd.DataFrame  # the run's facts

    @property
    def n_prompts_full_templates(self) -> int:
        """Dai et al.'s prompt count: every fact (repeats kept) times every template of its relation."""
        per_relation = self.templates_all.groupby("relation").size()
        return int(self.facts_raw["relation"].map(per_relation).sum())

    def summary(self) -> dict:
        """The counts the chapter reports (and tests check against STUDY.md)."""
        counts = self.template_counts()
        return {
            "relations": int(self.facts_raw["relation"].nunique()),
            "facts_raw": len(self.facts_raw),
            "facts_repeats_dropped": self.n_repeats_dropped,
            "facts": len(self.facts),
            "prompts_full_templates": self.n_prompts_full_templates,
            "templates_pararel": int(counts["pararel"].sum()),
            "templates_y_final": int(counts["y_final"].sum()),
            "relations_with_4_y_final": int((counts["y_final"] >= 4).sum()),
            "templates_authored": int(counts["authored"].sum()),
            "templates_per_relation_adapted": sorted(set(counts["adapted"].tolist())),
            "prompts_adapted": len(self.facts) * int(counts["adapted"].iloc[0]),
            "facts_train": int((self.facts["split"] == "train").sum()),
            "facts_test": int((self.facts["split"] == "test").sum()),
            "sample_relations": int(self.sample["relation"].nunique()),
            "sample_facts_train": int((self.sample["split"] == "train").sum()),
            "sample_facts_test": int((self.sample["split"] == "test").sum()),
        }

    def template_counts(self) -> pd.DataFrame:
        all_ = self.templates_all.groupby("relation").size().rename("pararel")
        final = self.templates_all[self.templates_all["template"].map(is_y_final)].groupby("relation").size()
        adapted = self.templates.groupby(["relation", "provenance"]).size().unstack(fill_value=0)
        table = pd.concat([all_, final.rename("y_final")], axis=1).fillna(0).astype(int)
        table["kept"] = adapted.get("pararel", 0)
        table["authored"] = adapted.get("authored", 0)
        table["adapted"] = table["kept"] + table["authored"]
        return table


def load_adapted(params: StudyParams, authored_csv: str | Path | None = None) -> AdaptedData:
    data_dir = resolve_data_dir(params.data_dir or None)
    facts_raw = read_facts(data_dir)
    facts, n_dropped = drop_repeated_facts(facts_raw)
    facts = split_facts(facts, params.test_fraction, params.seed)
    relations = sorted(facts["relation"].unique())
    templates_all = read_templates(data_dir, relations)
    templates = adapt_templates(templates_all, authored_csv, params.templates_per_relation)
    sample = sample_facts(facts, params)
    return AdaptedData(data_dir, facts_raw, facts, n_dropped, templates_all, templates, sample)

"""kn.data.pararel: PARAREL facts and templates, adapted to next-token (causal) models as LAND does.

API
    read_facts(data_dir) -> DataFrame[relation, fact_index, subject, object]        Dai et al.'s 34 relations
    drop_repeated_facts(facts) -> (facts, n_dropped)                                  (relation, subject, object) repeats
    read_templates(data_dir, relations) -> DataFrame[relation, position, template]   every PARAREL template
    is_y_final(template), prompt_stem(template, subject)
    adapt_templates(templates, authored_csv, n=10) -> DataFrame[relation, position, template, provenance]
    (facts get their cluster column from kn.data.clusters.with_clusters: the unit every test resamples)
    split_facts(facts, test_fraction, seed) -> facts with a `split` column (train/test), per relation, model-free;
        a (subject, object) pair held by several relations lands on one side in all of them
    choose_relations(facts, params) -> [relation];  sample_facts(facts, params, limits=None) -> a seeded slice
    fact_ids(facts) -> Series "P36:12";  prompt_id(fact_id, template_position) -> "P36:12#3"   names of rows
    build_prompts(facts, templates) -> DataFrame: one row per (fact, template), with prompt_id, prompt and answer
    add_answer_tokens(prompts, tokenizer) -> + target_id, answer_n_tokens
    load_adapted(params) -> AdaptedData (facts split, templates adapted, checked), from PARAREL or the user's files
    read_user_facts(path), read_user_templates(path)   CSV or JSON lines (see the book's methods page)
    DataFileError

Every reading error names the file and the line (or key) at fault.
"""

from __future__ import annotations

import csv
import io
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kn.base.errors import DataFileError
from kn.base.io import read_text
from kn.base.params import StudyParams, project_root
from kn.data.clusters import with_clusters
from kn.data.download import resolve_data_dir

FACTS_PATH = Path("Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json")
PATTERNS_DIR = Path("pararel/patterns")
AUTHORED_TEMPLATES = Path("data/templates.csv")

_TRAILING_DOT = re.compile(r"\s*\.\s*$")


# --- reading -----------------------------------------------------------------
def _json_lines(path: Path):
    """(where, record) of each non-blank line of a JSON-lines file; ``where`` names the file and line."""
    for lineno, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFileError(f"{where}: not valid JSON ({err.msg})") from err


def read_facts(data_dir: str | Path) -> pd.DataFrame:
    """Dai et al.'s fact set: one row per (relation, subject, object), in file order (repeats kept)."""
    path = Path(data_dir) / FACTS_PATH
    if not path.is_file():
        raise DataFileError(f"fact file {path} is missing")
    try:
        raw = json.loads(read_text(path))
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
        for where, record in _json_lines(path):
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
    with io.StringIO(read_text(path), newline="") as handle:
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
    """Seeded 9:1 (by default) train/test split by fact, within each relation; depends on nothing model-related.

    A (subject, object) pair that several relations hold (P176/P178, P364/P407, ...) goes to ONE side in all of them:
    their templates overlap, so a test prompt would otherwise repeat a train prompt word for word. Relations are taken
    in sorted order; the first that holds a pair decides its side, and the later ones inherit it and draw their other
    facts so that each relation still has round(test_fraction * n) test facts where it can. A relation that shares no
    pair is split by its own seeded permutation alone, whatever other relations are present."""
    facts = facts.copy()
    facts["split"] = "train"
    decided: dict[tuple[str, str], str] = {}
    for relation in sorted(facts["relation"].unique()):
        index = np.asarray(facts.index[facts["relation"] == relation])
        pairs = list(zip(facts.loc[index, "subject"], facts.loc[index, "object"]))
        forced = {i: decided[k] for i, k in zip(index, pairs) if k in decided}
        free = np.asarray([i for i in index if i not in forced])
        n_test = int(round(test_fraction * len(index)))
        n_free_test = min(max(n_test - sum(v == "test" for v in forced.values()), 0), len(free))
        order = _relation_rng(relation, seed, "split").permutation(len(free))
        test = set(free[order[:n_free_test]].tolist()) | {i for i, v in forced.items() if v == "test"}
        facts.loc[list(test), "split"] = "test"
        for i, k in zip(index, pairs):
            decided.setdefault(k, "test" if i in test else "train")
    return facts


def choose_relations(facts: pd.DataFrame, params: StudyParams) -> list[str]:
    """The run's relations: ``relations``, else a seeded sample of ``n_relations``, else all (sorted)."""
    relations = sorted(facts["relation"].unique())
    if params.relations is not None:
        missing = sorted(set(params.relations) - set(relations))
        if missing:
            raise DataFileError(f"parameter relations: {missing} not among the {len(relations)} relations")
        return sorted(params.relations)
    if params.n_relations is not None:
        order = np.random.default_rng(params.seed).permutation(len(relations))
        return sorted(relations[i] for i in order[: params.n_relations])
    return relations


def sample_facts(facts: pd.DataFrame, params: StudyParams, *, limits: dict | None = None,
                 purpose: str = "sample", relations: list | None = None) -> pd.DataFrame:
    """A seeded slice of ``facts``: the run's relations, then per relation and split at most ``limits[split]`` facts
    (default: train_facts_per_relation / test_facts_per_relation; None = all).

    A pair already drawn in an earlier relation (sorted order) is drawn first in a later one that holds it (its twin,
    on the same side of the split by construction), so cross-relation duplicates stay together; the rest is a seeded
    permutation per (relation, split, purpose). A relation's draw never depends on relations that share no pair.
    relations: the relations to draw from (default: choose_relations(facts, params))."""
    relations = choose_relations(facts, params) if relations is None else sorted(relations)
    if limits is None:
        limits = {"train": params.train_facts_per_relation, "test": params.test_facts_per_relation}
    drawn: set[tuple[str, str]] = set()
    parts = []
    for relation in relations:
        group = facts[facts["relation"] == relation]
        for split in ("train", "test"):
            chunk = group[group["split"] == split]
            limit = limits.get(split)
            if limit is not None and limit < len(chunk):
                keys = list(zip(chunk["subject"], chunk["object"]))
                twins = [i for i, k in enumerate(keys) if k in drawn][:limit]
                rest = [i for i in _relation_rng(relation, params.seed, f"{purpose}-{split}").permutation(len(chunk))
                        if i not in set(twins)]
                chunk = chunk.iloc[np.sort(twins + rest[: limit - len(twins)])]
            drawn.update(zip(chunk["subject"], chunk["object"]))
            parts.append(chunk)
    return pd.concat(parts).sort_values(["relation", "fact_index"]).reset_index(drop=True)


# --- prompts ------------------------------------------------------------------------
def fact_ids(facts: pd.DataFrame) -> pd.Series:
    """A fact's name, "P36:12": its relation and its index in the relation's list as read."""
    return facts["relation"] + ":" + facts["fact_index"].astype(str)


def prompt_id(fact_id: str, template_position: int) -> str:
    """A prompt's name: its fact and template, "P176:12#3". Two relations can hold the same subject, object and
    wording, so the prompt's text (or the attribution store's key, made from it) does not name a row; this does."""
    return f"{fact_id}#{int(template_position)}"


def build_prompts(facts: pd.DataFrame, templates: pd.DataFrame) -> pd.DataFrame:
    """One row per (fact, template): prompt_id, relation, cluster (the facts' cluster column where they have one,
    else the relation), fact_id, subject, object, split, template_position, template, provenance, prompt, answer
    (" " + object: the next-token continuation)."""
    merged = facts.merge(templates.rename(columns={"position": "template_position"}), on="relation")
    merged["fact_id"] = fact_ids(merged)
    merged["prompt_id"] = [prompt_id(f, t) for f, t in zip(merged["fact_id"], merged["template_position"])]
    merged["prompt"] = [prompt_stem(t, s) for t, s in zip(merged["template"], merged["subject"])]
    merged["answer"] = " " + merged["object"]
    if "cluster" not in merged:
        merged["cluster"] = merged["relation"]
    columns = ["prompt_id", "relation", "cluster", "fact_id", "fact_index", "subject", "object", "split", "template_position",
               "template", "provenance", "prompt", "answer"]
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
    data_dir: Path  # the PARAREL folder, or the folder of a user's facts file
    facts_raw: pd.DataFrame  # the facts as read
    facts: pd.DataFrame  # repeats dropped, with split
    n_repeats_dropped: int
    templates_all: pd.DataFrame  # every template read (PARAREL: all templates of the 34 relations)
    templates: pd.DataFrame  # adapted: n per relation, with provenance
    source: str = "pararel"  # pararel | user

    @property
    def n_prompts_full_templates(self) -> int:
        """Dai et al.'s prompt count: every fact (repeats kept) times every template of its relation."""
        per_relation = self.templates_all.groupby("relation").size()
        return int(self.facts_raw["relation"].map(per_relation).sum())

    def summary(self) -> dict:
        """The data's counts, before any sampling (the chapter reports them; tests check them)."""
        counts = self.template_counts()
        return {
            "source": self.source,
            "relations": int(self.facts_raw["relation"].nunique()),
            "facts_raw": len(self.facts_raw),
            "facts_repeats_dropped": self.n_repeats_dropped,
            "facts": len(self.facts),
            "prompts_full_templates": self.n_prompts_full_templates,
            "templates_by_provenance": {str(k): int(v) for k, v in self.templates_all.get(  # PARAREL's: all pararel
                "provenance", pd.Series("pararel", self.templates_all.index)).value_counts().sort_index().items()},
            "templates_y_final": int(counts["y_final"].sum()),
            "relations_with_4_y_final": int((counts["y_final"] >= 4).sum()),
            "templates_authored": int(counts["authored"].sum()),
            "templates_per_relation_adapted": sorted(set(counts["adapted"].tolist())),
            "prompts_adapted": int(self.facts["relation"].map(counts["adapted"]).sum()),
            "facts_train": int((self.facts["split"] == "train").sum()),
            "facts_test": int((self.facts["split"] == "test").sum()),
        }

    def counts(self) -> pd.Series:
        """The data's counts with readable labels (chapter 1's first table)."""
        s = self.summary()
        return pd.Series({
            "relations": s["relations"],
            "facts as read": s["facts_raw"],
            "repeated (relation, subject, object), dropped": s["facts_repeats_dropped"],
            "facts kept": s["facts"],
            "prompts, facts x every template (Dai et al.'s count)": s["prompts_full_templates"],
            **{f"templates of these relations ({k})": n for k, n in s["templates_by_provenance"].items()},
            "... with [Y] last": s["templates_y_final"],
            "relations with 4 or more [Y]-final templates": s["relations_with_4_y_final"],
            "templates authored by this project": s["templates_authored"],
            "prompts after adaptation": s["prompts_adapted"],
            "train facts / test facts": f"{s['facts_train']:,} / {s['facts_test']:,}",
        }, name="count")

    def template_counts(self) -> pd.DataFrame:
        all_ = self.templates_all.groupby("relation").size().rename("pararel")
        final = self.templates_all[self.templates_all["template"].map(is_y_final)].groupby("relation").size()
        adapted = self.templates.groupby(["relation", "provenance"]).size().unstack(fill_value=0)
        table = pd.concat([all_, final.rename("y_final")], axis=1).fillna(0).astype(int)
        table["kept"] = adapted.get("pararel", 0)
        table["authored"] = adapted.get("authored", 0)
        table["adapted"] = adapted.sum(axis=1)
        return table


def load_adapted(params: StudyParams, authored_csv: str | Path | None = None) -> AdaptedData:
    """The run's data, split: PARAREL adapted as LAND does, or the user's own facts and templates (facts_file,
    templates_file). Sampling is kn.data.population's job (it may need the model)."""
    if params.facts_file:
        return _load_user(params)
    data_dir = resolve_data_dir(params.data_dir or None)
    facts_raw = read_facts(data_dir)
    facts, n_dropped = drop_repeated_facts(facts_raw)
    facts = split_facts(facts, params.test_fraction, params.seed)
    relations = sorted(facts["relation"].unique())
    templates_all = read_templates(data_dir, relations)
    templates = adapt_templates(templates_all, authored_csv, params.templates_per_relation)
    facts = with_clusters(facts, templates)
    return AdaptedData(data_dir, facts_raw, facts, n_dropped, templates_all, templates)


# --- the user's own facts ------------------------------------------------------------
_RELATION_ID = re.compile(r"[A-Za-z0-9_.-]+")


def _read_records(path: Path, columns: tuple[str, ...]) -> list[tuple[str, dict]]:
    """(where, record) of each row of a CSV file (header line) or a JSON-lines file (.jsonl), with ``columns``
    present and non-empty strings; ``where`` names the file and line."""
    if not path.is_file():
        raise DataFileError(f"file {path} is missing")
    rows = []
    if path.suffix == ".jsonl":
        for where, record in _json_lines(path):
            if not isinstance(record, dict):
                raise DataFileError(f"{where}: expected an object with fields {list(columns)}")
            rows.append((where, record))
    elif path.suffix == ".csv":
        with io.StringIO(read_text(path), newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or not set(columns) <= set(reader.fieldnames):
                raise DataFileError(f"{path}: line 1: header must hold {list(columns)}, got {reader.fieldnames}")
            rows = [(f"{path}: line {reader.line_num}", row) for row in reader]
    else:
        raise DataFileError(f"{path}: use a .csv file (with a header line) or a .jsonl file (one JSON object per line)")
    for where, record in rows:
        for column in columns:
            value = record.get(column)
            if not isinstance(value, str) or not value.strip():
                hint = " (provenance: pararel for a PARAREL template, authored for one you wrote)"
                raise DataFileError(f"{where}: field {column!r} must be a non-empty string, got {value!r}"
                                    + (hint if column == "provenance" else ""))
    if not rows:
        raise DataFileError(f"{path}: no rows")
    return rows


def read_user_facts(path: str | Path) -> pd.DataFrame:
    """A user's facts: CSV (header relation,subject,object) or JSON lines ({"relation", "subject", "object"}); a
    repeated fact is refused. Returns DataFrame[relation, fact_index, subject, object], fact_index within a relation."""
    rows, counter, seen = [], {}, {}
    for where, record in _read_records(Path(path), ("relation", "subject", "object")):
        relation = record["relation"].strip()
        if not _RELATION_ID.fullmatch(relation):
            raise DataFileError(f"{where}: relation {relation!r} may hold only letters, digits, '_', '.' and '-'")
        fact = (relation, record["subject"].strip(), record["object"].strip())
        if seen.setdefault(fact, where) != where:
            raise DataFileError(f"{where}: the fact ({', '.join(fact)}) repeats {seen[fact].rsplit(': ', 1)[-1]}")
        rows.append((relation, counter.get(relation, 0), *fact[1:]))
        counter[relation] = counter.get(relation, 0) + 1
    return pd.DataFrame(rows, columns=["relation", "fact_index", "subject", "object"])


def read_user_templates(path: str | Path) -> pd.DataFrame:
    """A user's templates: CSV (header relation,template,provenance) or JSON lines; each holds [X] once and ends with
    [Y] (a final "." allowed), once per relation; provenance any label (pararel, authored). -> DataFrame[relation,
    position, template, provenance]."""
    rows, counter, seen = [], {}, {}
    for where, record in _read_records(Path(path), ("relation", "template", "provenance")):
        relation = record["relation"].strip()
        _check_slots(record["template"], where, require_y_final=True)
        if seen.setdefault((relation, _normal(record["template"])), where) != where:
            raise DataFileError(f"{where}: template {record['template']!r} repeats "
                                f"{seen[relation, _normal(record['template'])].rsplit(': ', 1)[-1]} of {relation}")
        rows.append((relation, counter.get(relation, 0), record["template"], record["provenance"].strip()))
        counter[relation] = counter.get(relation, 0) + 1
    return pd.DataFrame(rows, columns=["relation", "position", "template", "provenance"])


def _load_user(params: StudyParams) -> AdaptedData:
    root = project_root()
    facts_path, templates_path = (Path(f) if Path(f).is_absolute() else root / f
                                  for f in (params.facts_file, params.templates_file))
    facts_raw = read_user_facts(facts_path)
    templates_all = read_user_templates(templates_path)
    n = params.templates_per_relation
    counts = templates_all.groupby("relation").size()
    for relation in sorted(facts_raw["relation"].unique()):
        if counts.get(relation, 0) < n:
            raise DataFileError(f"{templates_path}: relation {relation} has {counts.get(relation, 0)} templates; "
                                f"templates_per_relation={n} needs {n}")
    templates = templates_all[templates_all["position"] < n].reset_index(drop=True)
    facts, n_dropped = drop_repeated_facts(facts_raw)
    facts = with_clusters(split_facts(facts, params.test_fraction, params.seed), templates)
    return AdaptedData(facts_path.parent, facts_raw, facts, n_dropped, templates_all, templates, source="user")

"""kn.book.results: every run folder's summaries, set beside the papers' tables, and the claims they support.

API
    find_runs(runs_root) -> {run name: RunFolder}          runs whose chapter 1 finished
    Run(name, folder, data, attribution, choices, overlap, land, amplification, editing)   typed summaries (None
                                                            where a chapter has not run); .label
    load_runs(runs) -> [Run]
    data_table(runs), table4(runs), table2(runs), table6(runs), table7(runs), detectors_table(runs),
    table9(runs), table10(runs), erasing_table(runs), choices_table(runs) -> DataFrame   papers' rows first;
        ours as kn.base.stats.Interval ("mean [low, high]"), "–" where a source gives nothing
    claims(runs, chapter) -> DataFrame [claim x run]: each run's verdict sentence for each claim of that chapter
    run_title(folder, name) -> str                          "<name>: <model>, <relations> relations, <facts> facts, ..."
    scale_sentence(data) -> str     the run's facts, prompts, train prompts and test facts against the papers' (PAPER_SCALE)
        (the book's navigation names each run's section with it)
    chapter_times(runs) -> DataFrame [run x chapter] seconds, chapters by number and short name ("4 LAND")
    environment_table(runs) -> DataFrame [run x (python, torch, transformers, commit, against the lock)]: what each
        run was made with (environment.json); a run made under other versions than the lock, or whose chapters were
        made under different ones, says so
    stale_note(runs) -> str        markdown, one line per run with stale chapters (kn.base.lineage): which, why, and the
        command that refreshes them; "" when no run has any
    CHAPTER_SUMMARIES                                       {field of Run: its kn.book.summaries record}

Nothing is recomputed: every number comes from a chapter's summary record (kn.book.summaries), and every sentence is the one
the chapter itself printed (kn.book.findings.common), so the results page and the chapters cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kn.base import lineage, paper
from kn.base.rundir import REFERENCE_MARKER, RunFolder
from kn.book.environment import lock_differences
from kn.book.summaries import (
    AmplificationSummary,
    AttributionSummary,
    ChoicesSummary,
    DataSummary,
    EditingSummary,
    LandSummary,
    OverlapSummary,
)
from kn.experiments.land_operating import DETECTORS

CHAPTER_SUMMARIES = {"data": DataSummary, "attribution": AttributionSummary, "choices": ChoicesSummary,
                     "overlap": OverlapSummary, "land": LandSummary, "amplification": AmplificationSummary,
                     "editing": EditingSummary}


def find_runs(runs_root: str | Path) -> dict[str, RunFolder]:
    root = Path(runs_root)
    if not root.is_dir():
        return {}
    return {p.name: RunFolder(p) for p in sorted(root.iterdir()) if (p / "data_summary.json").is_file()}


@dataclass
class Run:
    name: str
    folder: RunFolder
    data: DataSummary
    attribution: AttributionSummary | None = None
    choices: ChoicesSummary | None = None
    overlap: OverlapSummary | None = None
    land: LandSummary | None = None
    amplification: AmplificationSummary | None = None
    editing: EditingSummary | None = None
    outdated: list = None  # chapters whose record is from an older version: re-run them

    @property
    def short(self) -> str:
        """The run's name, with its model where the name does not say it ("smoke (smollm2-135m)")."""
        model = self.data.model.split("/")[-1].lower()
        return self.name if model.split("-")[0] in self.name.lower() else f"{self.name} ({self.data.model})"

    @property
    def label(self) -> str:
        """"ours, <model>" plus the run's name when it differs from the model's, and its population."""
        model = self.data.model
        name = "" if self.name in (model, model.split("/")[-1].lower().replace(".", "-")) else f" ({self.name})"
        population = "known facts" if self.data.population == "known" else "all facts"
        return f"ours, {model}{name}, {population}"


def load_runs(runs: dict[str, RunFolder]) -> list[Run]:
    """The runs' typed summaries. A record written by an older version of a chapter (other fields) is left out, with
    the chapter to re-run in Run.outdated, so one stale run folder cannot stop the book."""
    out = []
    for name, folder in runs.items():
        found, outdated = {}, []
        for key, cls in CHAPTER_SUMMARIES.items():
            try:
                found[key] = cls.read(folder) if cls.exists(folder) else None
            except ValueError:
                found[key] = None
                outdated.append(cls.CHAPTER)
        if found["data"] is not None:
            out.append(Run(name, folder, **found, outdated=outdated))
    return out


def _frame(rows: dict, columns=None) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict(rows, orient="index")
    return frame if columns is None else frame.reindex(columns=columns)


def data_table(runs: list[Run]) -> pd.DataFrame:
    rows = {r.label: {"population": r.data.population + (f" ({r.data.known_rule})" if r.data.known_rule else ""),
                      "relations": r.data.sample_relations, "train facts": r.data.sample_facts_train,
                      "test facts": r.data.sample_facts_test, "prompts": r.data.sample_prompts,
                      "share of the papers' prompts": r.data.sample_prompts / paper.PAPER_SCALE["prompts"],
                      "top-1 accuracy": r.data.top1_accuracy,
                      "to re-run": ", ".join(r.outdated or []) or "–"} for r in runs}
    scale = paper.PAPER_SCALE
    rows["the papers (LAND, Dai et al.)"] = {
        "population": "all", "relations": scale["relations"], "train facts": scale["facts"] - scale["test_facts"],
        "test facts": scale["test_facts"], "prompts": scale["prompts"], "share of the papers' prompts": 1.0,
        "top-1 accuracy": None, "to re-run": "–"}
    return _frame(rows)


def table4(runs: list[Run]) -> pd.DataFrame:
    columns = ["N_s", "N_u", "N_so", "R_so", "N_uo", "R_uo", "R_uo (Eq. 5)"]
    rows = {source: {**row.to_dict(), "R_uo (Eq. 5)": row["N_s"] / row["N_u"]}
            for source, row in paper.LAND_TABLE4.iterrows()}
    for r in runs:
        if r.overlap:
            rows[f"{r.label}, test facts"] = {("R_uo (Eq. 5)" if k == "R_uo_eq5" else k): v
                                              for k, v in r.overlap.table4_test.items()}
    return _frame(rows, columns)


def table2(runs: list[Run]) -> pd.DataFrame:
    rows = {source: row.to_dict() for source, row in paper.DAI_TABLE2.iterrows()}
    for r in runs:
        if r.overlap:
            rows[r.label] = {"neurons_per_fact": r.overlap.refined_per_fact, "intra_relation": r.overlap.intra_relation,
                             "inter_relation": r.overlap.inter_relation}
    return _frame(rows, list(paper.DAI_TABLE2.columns))


def table6(runs: list[Run]) -> pd.DataFrame:
    rows = {source: row.to_dict() for source, row in paper.LAND_TABLE6.iterrows()}
    for r in runs:
        if r.land:
            rows[r.label] = {"L": r.land.n_layers, "H": r.land.n_neurons, "R": r.land.rank,
                             "parameters": r.land.n_parameters}
    return _frame(rows, list(paper.LAND_TABLE6.columns))


def table7(runs: list[Run]) -> pd.DataFrame:
    columns = ["N_s", "N_so", "R_so", "N_L", "N_Lo", "R_Lo", "LAND, other facts of the relation", "LAND, fact-specific"]
    rows = {source: {"N_s": t4["N_s"], "N_so": t4["N_so"], "R_so": t4["R_so"], **paper.LAND_TABLE7.loc[source]}
            for source, t4 in paper.LAND_TABLE4.iterrows()}
    for r in runs:
        if r.land:
            land = r.land.detectors.get("land", {})
            rows[f"{r.label}, test facts"] = {**r.land.table7,
                                              "LAND, other facts of the relation": land.get("across_same_relation"),
                                              "LAND, fact-specific": land.get("fact_specific")}
    return _frame(rows, columns)


def detectors_table(runs: list[Run]) -> pd.DataFrame:

    rows = {}
    for r in runs:
        if r.land:
            for key, metrics in r.land.detectors.items():
                rows[(r.label, DETECTORS.get(key, key))] = metrics
    frame = _frame(rows)
    # the set's size and the overlaps a reader compares first, then the controls
    first = [c for c in ("size", "within", "fact_specific", "across_same_relation", "across_other_relation")
             if c in frame.columns]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    if not frame.empty:
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["run", "detector"])
    return frame


def _method_table(runs: list[Run], reference: pd.DataFrame, field: str, key: str) -> pd.DataFrame:
    rows = {(f"LAND, {m}", method): row[["Same", "Related", "Unrelated"]].to_dict()
            for (m, method), row in reference.set_index(["model", "method"]).iterrows()}
    for r in runs:
        summary = getattr(r, field)
        if summary:
            for method, by_condition in getattr(summary, key).items():
                rows[(r.label, method)] = by_condition
    frame = _frame(rows, ["Same", "Related", "Unrelated"])
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["source", "method"])
    return frame


def table9(runs: list[Run]) -> pd.DataFrame:
    return _method_table(runs, paper.LAND_TABLE9, "amplification", "amplify")


def table10(runs: list[Run]) -> pd.DataFrame:
    return _method_table(runs, paper.LAND_TABLE10, "editing", "success")


def erasing_table(runs: list[Run]) -> pd.DataFrame:
    rows = {}
    for r in runs:
        if r.editing:
            e = pd.DataFrame(r.editing.erasing)
            for what, part in e.groupby("erased"):
                rows[(r.label, what)] = {"relations": len(part),
                                         "erased relation, mean change": float(part["change_erased_relation"].mean()),
                                         "other relations, mean change": float(part["change_other_relations"].mean())}
    frame = _frame(rows)
    if not frame.empty:
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["run", "erased"])
    return frame


def choices_table(runs: list[Run]) -> pd.DataFrame:
    """Per run, the paper's rule and m = 1 against the converged reference, and the two neuron definitions."""
    rows = {}
    for r in runs:
        if r.choices:
            table = pd.DataFrame(r.choices.convergence).set_index(["rule", "steps"])
            row = {"prompts": r.choices.prompts}
            for (rule, m), label in ((("right", 20), "paper's rule"), (("right", 1), "m = 1"),
                                     (("right", 100), "right, m = 100")):
                if (rule, m) in table.index:
                    row[f"Jaccard vs reference, {label}"] = float(table.loc[(rule, m), "jaccard_reference_mean"])
            row["slow layers"] = ", ".join(map(str, r.choices.slow_layers)) or "none"
            row["Jaccard of the two neuron definitions"] = r.choices.definitions_jaccard
            rows[r.label] = row
    return _frame(rows)


def claims(runs: list[Run], chapter: str) -> pd.DataFrame:
    """[claim x run]: the sentence each run's chapter printed for each of its claims."""
    rows: dict = {}
    for r in runs:
        summary = getattr(r, chapter)
        if summary is None:
            continue
        for c in summary.claims:
            rows.setdefault(c.name, {})[r.label] = c.sentence
    return pd.DataFrame.from_dict(rows, orient="index")
















def _train_prompts(data: DataSummary) -> int:
    # every fact has the same templates (the adaptation brings each relation to exactly 10), so prompts split as facts
    facts = data.sample_facts_train + data.sample_facts_test
    return round(data.sample_prompts * data.sample_facts_train / facts) if facts else 0


def scale_sentence(data: DataSummary) -> str:
    """One sentence: this run's size against the papers' (kn.base.paper.PAPER_SCALE), said beside every verdict."""
    paper_scale = paper.PAPER_SCALE
    facts = data.sample_facts_train + data.sample_facts_test
    share = data.sample_prompts / paper_scale["prompts"]
    return (f"Scale: this run has {facts:,} facts of {data.sample_relations} relations, {data.sample_prompts:,} "
            f"prompts, {_train_prompts(data):,} train-split prompts and {data.sample_facts_test:,} test facts; the "
            f"papers have {paper_scale['facts']:,} facts of {paper_scale['relations']}, {paper_scale['prompts']:,} "
            f"prompts, {paper_scale['train_prompts']:,} train-split prompts and {paper_scale['test_facts']:,} test "
            f"facts ({share:.1%} of their prompts).")


def run_title(folder: RunFolder | None, name: str) -> str:
    """The run's name with its model and scale, from its chapter 1 record; the name alone where there is none."""
    if folder is None or not DataSummary.exists(folder):
        return name
    try:
        data = DataSummary.read(folder)
    except (ValueError, OSError, KeyError):
        return name
    facts = data.sample_facts_train + data.sample_facts_test
    population = "known facts" if data.population == "known" else "all facts"
    marker = folder.path / REFERENCE_MARKER
    reference = (f", the reference run of commit {(lineage.load(marker).get('commit') or 'unknown')[:10]}"
                 if marker.is_file() else "")
    return (f"{name}: {data.model}, {data.sample_relations} relation{'s' if data.sample_relations != 1 else ''}, "
            f"{facts:,} {population}, {data.sample_prompts:,} prompts{reference}")








_CHAPTER_NAMES = {"01_data_adaptation": "1 data", "02_attribution": "2 attribution",
                  "02b_attribution_choices": "2b attribution choices", "03_overlap": "3 overlap", "04_land": "4 LAND",
                  "05_amplification": "5 amplification", "06_editing": "6 editing"}


def stale_note(runs: dict[str, RunFolder]) -> str:
    lines = []
    for name, folder in runs.items():
        stale = lineage.stale_chapters(folder.path)
        if stale:
            why = "; ".join(f"{chapter} {entry.reason()}" for chapter, entry in stale.items())
            commands = ", then ".join(f"`{c}`" for c in lineage.run_refresh_commands(folder.path, stale))
            lines.append(f"- **{name}**, stale chapters: {why}. Refresh: {commands}")
    if not lines:
        return ""
    return "**Stale chapters**: their pages were computed from an older output of an earlier chapter.\n\n" + \
        "\n".join(lines)


def chapter_times(runs: dict[str, RunFolder]) -> pd.DataFrame:
    rows = {name: run.read_json("timings") for name, run in runs.items() if run.has("timings.json")}
    table = pd.DataFrame(rows).T
    table = table.rename(columns=_CHAPTER_NAMES)
    if not table.empty:
        table["total"] = table.sum(axis=1)
    return table.astype(float) if not table.empty else table


def environment_table(runs: dict[str, RunFolder]) -> pd.DataFrame:
    """One row per run: the versions its chapters recorded and how they compare with the project's lock."""
    rows = {}
    for name, run in runs.items():
        records = run.read_json("environment") if run.has("environment.json") else {}
        if not records:
            rows[name] = {"python": "–", "torch": "–", "transformers": "–", "commit": "–",
                          "against the lock": "not recorded (made before versions were recorded)"}
            continue
        def seen(get):
            return sorted({str(get(env)) for env in records.values()})
        torch_v = seen(lambda e: e["packages"].get("torch"))
        transformers_v = seen(lambda e: e["packages"].get("transformers"))
        commits = seen(lambda e: (e["commit"] or "unknown")[:10] + (" (modified)" if e.get("dirty") else ""))
        notes = sorted({line for env in records.values() for line in lock_differences(env)})
        mixed = [what for what, values in (("torch", torch_v), ("transformers", transformers_v), ("commit", commits))
                 if len(values) > 1]
        verdict = "as locked" if not notes else "other versions: " + "; ".join(notes)
        if mixed:
            verdict += "; chapters made under different " + " and ".join(mixed)
        rows[name] = {"python": ", ".join(seen(lambda e: e["python"])), "torch": ", ".join(torch_v),
                      "transformers": ", ".join(transformers_v), "commit": ", ".join(commits),
                      "against the lock": verdict}
    return pd.DataFrame.from_dict(rows, orient="index")

"""kn.results: collect every run folder's summaries into the tables of the results page.

API
    find_runs(runs_root) -> {run name: RunFolder}                 runs whose chapter 1 finished
    collect(runs) -> dict[str, DataFrame]                         one table per paper table, paper rows first
    verdicts(tables) -> dict[str, str]                            one sentence per table: does the claim hold here?
    chapter_times(runs) -> DataFrame [run x chapter] seconds

Nothing is recomputed: every number comes from a chapter's *_summary.json in the run folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from . import paper
from .store import RunFolder

CONDITIONS = ("Same", "Related", "Unrelated")


def find_runs(runs_root: str | Path) -> dict[str, RunFolder]:
    root = Path(runs_root)
    if not root.is_dir():
        return {}
    return {p.name: RunFolder(p) for p in sorted(root.iterdir()) if (p / "data_summary.json").is_file()}


def _model(run: RunFolder) -> str:
    return run.read_json("data_summary")["model"]


def _label(name: str, run: RunFolder) -> str:
    model = _model(run)
    return f"ours, {model}" if name == model or name == model.split("/")[-1].lower() else f"ours, {model} ({name})"


def _get(run: RunFolder, name: str):
    return run.read_json(name) if run.has(f"{name}.json") else None


def collect(runs: dict[str, RunFolder]) -> dict[str, pd.DataFrame]:
    tables: dict[str, pd.DataFrame] = {}

    rows = []
    for name, run in runs.items():
        d = run.read_json("data_summary")
        rows.append({"run": _label(name, run), "facts": d["sample_facts_train"] + d["sample_facts_test"],
                     "prompts": d["sample_prompts"], "top-1 accuracy": d["top1_accuracy"],
                     "multi-token answers": d["multi_token_answer_share"]})
    tables["data"] = pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()

    t4 = paper.LAND_TABLE4.copy()
    t2 = paper.DAI_TABLE2.copy()
    for name, run in runs.items():
        o = _get(run, "overlap_summary")
        if o:
            s = o["table4"]
            t4.loc[_label(name, run)] = [s["N_s"], s["N_u"], s["N_so"], s["R_so"], s["N_uo"], s["R_uo_mean_ratio"]]
            t2.loc[_label(name, run)] = [o["refined_per_fact"], o["intra_relation"], o["inter_relation"]]
    tables["table4"], tables["dai_table2"] = t4, t2

    t6 = paper.LAND_TABLE6.copy()
    t7 = paper.LAND_TABLE7.copy()
    t7.insert(0, "R_so", [0.2097, 0.2276])
    t7["R_Lo, other facts"] = np.nan
    for name, run in runs.items():
        land = _get(run, "land_summary")
        if land:
            t6.loc[_label(name, run)] = [land["n_layers"], land["n_neurons"], land["rank"], land["n_parameters"]]
            across = np.nanmean([land["across_fact_same_relation"], land["across_fact_other_relation"]])
            t7.loc[_label(name, run)] = [land["R_so"], land["N_L"], land["N_Lo"], land["R_Lo"], across]
    tables["table6"], tables["table7"] = t6, t7

    t9 = paper.LAND_TABLE9.copy()
    t10 = paper.LAND_TABLE10.copy()
    for name, run in runs.items():
        amp = _get(run, "amplification_summary")
        if amp:
            for method in amp["amplify_mean"]["Same"]:
                t9.loc[len(t9)] = [_label(name, run), method] + [amp["amplify_mean"][c][method] for c in CONDITIONS]
        edit = _get(run, "editing_summary")
        if edit:
            for method, by_condition in edit["success"].items():
                t10.loc[len(t10)] = [_label(name, run), method] + [by_condition[c] for c in CONDITIONS]
    tables["table9"], tables["table10"] = t9, t10

    erase = []
    for name, run in runs.items():
        edit = _get(run, "editing_summary")
        if edit:
            e = pd.DataFrame(edit["erasing"])
            erase.append({"run": _label(name, run), "relations": len(e),
                          "erased relation, mean change": e["change, erased relation"].mean(),
                          "other relations, mean change": e["change, other relations (mean)"].mean()})
    tables["erasing"] = pd.DataFrame(erase).set_index("run") if erase else pd.DataFrame()
    return tables


def _ours(table: pd.DataFrame) -> pd.DataFrame:
    index = table.index if "model" not in table else table["model"]
    return table[[str(i).startswith("ours") for i in index]]


def _our_methods(table: pd.DataFrame):
    """(run label, its rows indexed by method) for each of our runs that has the paper's three methods."""
    for model, group in table[table["model"].str.startswith("ours")].groupby("model"):
        g = group.set_index("method")
        if {"LAND", "KN-refined", "Baseline"} <= set(g.index):
            yield model, g


def verdicts(tables: dict[str, pd.DataFrame]) -> dict[str, str]:
    """A sentence per table saying whether the paper's claim holds for each of our runs."""
    out = {}
    t4 = _ours(tables["table4"])
    out["table4"] = " ".join(
        f"{run}: two paraphrases share {r['R_so']:.0%} of their coarse neurons (Jaccard), "
        + ("so the claim that paraphrases light up largely different neurons holds." if r["R_so"] < 0.5
           else "more than half: the claim does not hold here.") for run, r in t4.iterrows()) or "No run yet."
    t2 = _ours(tables["dai_table2"])
    out["dai_table2"] = " ".join(
        f"{run}: {r['neurons_per_fact']:.1f} refined neurons per fact; facts of one relation share "
        f"{r['intra_relation']:.2f} on average against {r['inter_relation']:.2f} across relations, "
        + ("so, as for BERT, refined sets are more alike within a relation." if r["intra_relation"] > r["inter_relation"]
           else "unlike BERT, no more alike within a relation.") for run, r in t2.iterrows()) or "No run yet."
    t7 = _ours(tables["table7"])
    out["table7"] = " ".join(
        f"{run}: LAND sets of one fact's paraphrases overlap {r['R_Lo']:.0%} (coarse sets: {r['R_so']:.0%}); "
        f"LAND sets of different facts overlap {r['R_Lo, other facts']:.0%}. "
        + ("The paper's claim of >96% overlap holds" if r["R_Lo"] > 0.9 else "The paper's >96% overlap is not reached")
        + (", but sets of different facts are nearly as alike, so the overlap reflects a fact-independent set."
           if r["R_Lo"] - r["R_Lo, other facts"] < 0.1 else ", and it is specific to the fact.")
        for run, r in t7.iterrows()) or "No run yet."
    lines = []
    for model, g in _our_methods(tables["table9"]):
        best = g.loc[["Baseline", "KN-refined", "LAND"], "Related"].idxmax()
        lines.append(f"{model}: on Related prompts the largest mean change rate comes from {best} "
                     f"(LAND {g.loc['LAND', 'Related']:.2f}, KN-refined {g.loc['KN-refined', 'Related']:.2f}, "
                     f"Baseline {g.loc['Baseline', 'Related']:.2f}; random neurons {g.loc['Random', 'Related']:.2f}); "
                     + ("LAND's advantage claimed by the paper holds." if best == "LAND"
                        else "the paper's claim that LAND amplifies best does not hold here."))
    out["table9"] = " ".join(lines) or "No run yet."
    lines = []
    for model, g in _our_methods(tables["table10"]):
        best = g.loc[["Baseline", "KN-refined", "LAND"], "Related"].idxmax()
        lines.append(f"{model}: editing succeeds on {g.loc['LAND', 'Related']:.0%} of Related prompts with LAND, "
                     f"{g.loc['KN-refined', 'Related']:.0%} with KN-refined, {g.loc['Baseline', 'Related']:.0%} with "
                     f"Baseline and {g.loc['Random', 'Related']:.0%} with random neurons (before: "
                     f"{g.loc['Before', 'Related']:.0%}); "
                     + ("LAND leads, as the paper claims." if best == "LAND" and
                        g.loc["LAND", "Related"] > g.loc["KN-refined", "Related"]
                        else "LAND does not lead here, against the paper's claim."))
    out["table10"] = " ".join(lines) or "No run yet."
    return out


def chapter_times(runs: dict[str, RunFolder]) -> pd.DataFrame:
    rows = {name: run.read_json("timings") for name, run in runs.items() if run.has("timings.json")}
    table = pd.DataFrame(rows).T
    if not table.empty:
        table["total"] = table.sum(axis=1)
    return table

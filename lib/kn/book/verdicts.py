"""kn.book.verdicts: the claims of every run side by side: each claim's verdict in one word, the results page's forest
plots, the claims across runs (only the declared primary contrasts counted) and the power each primary claim needs.

API
    primary_counts(runs) -> DataFrame [family x run]   primary contrasts favouring A / B / not distinguishable (Holm)
    power_lines(runs) -> DataFrame   per primary claim and run: the paper's effect, test facts needed at 80% power, here
    across_models(runs) -> DataFrame [claim x (run..., "verdict")]: holds for every run, for some, for none
    verdict(chapter, claim) -> "favours A" | "favours B" (a primary contrast "A vs B") | "holds" | "does not hold" |
        "not distinguishable" | "differs" | None (no interval, no verdict): one word per Claim, the same on the
        tables and the forest plots
    forest_data(runs) -> DataFrame, one row per (family, claim, run) of a claim with an interval: family (a
        chapter's declared family of primary contrasts, Claim.family, or the chapter's other claims), chapter,
        primary, claim, run, mean, lo, hi, verdict, p_holm, paper ({source: the paper's value of the same quantity}),
        bound (the claim's own threshold, else None), axis (what is measured), unit (shared by a declared family's
        claims), percent (a fraction)
    forest_families(runs) -> [(title, frame)]               forest_data by family, in chapter order
    FAMILIES                                                {chapter field: family title}
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd

from kn.base import paper
from kn.book.results import Run

FAMILIES = {"choices": "Attribution choices (chapter 2b)", "overlap": "Overlap of paraphrases (chapter 3)",
            "land": "LAND on trial (chapter 4)", "amplification": "Amplification (chapter 5)",
            "editing": "Editing (chapter 6)"}


_PAIR = re.compile(r"^(Same|Related|Unrelated): (.+) vs (.+)$")


def _paper_difference(table: pd.DataFrame, condition: str, a: str, b: str) -> dict:
    """{"LAND, <model>": a - b on ``condition``} from one of LAND's method tables (9 or 10), where both are in it."""
    out = {}
    for model, part in table.groupby("model", sort=False):
        rows = part.set_index("method")
        if a in rows.index and b in rows.index:
            out[f"LAND, {model}"] = float(rows.loc[a, condition] - rows.loc[b, condition])
    return out


def _claim_meta(chapter: str, claim) -> dict:
    """What a claim's interval measures (axis; unit, shared by a declared family's claims; percent), its own threshold
    (bound) and the papers' value of the same quantity (paper), for the forest plots."""
    name, family = claim.name, getattr(claim, "family", "") or ""
    t4 = paper.LAND_TABLE4
    models = [source.split(", ")[1] for source in t4.index]
    pair = _PAIR.match(name)
    meta = {"axis": "estimate", "percent": False}
    if chapter == "overlap" and name == "paraphrases overlap little":
        meta = {"axis": "R_so, Jaccard of two paraphrases' coarse sets", "percent": True, "bound": 0.5,
                "paper": {f"LAND, {m}": float(v) for m, v in zip(models, t4["R_so"])}}
    elif chapter == "overlap" and name == "N_uo is not N_s":
        meta = {"axis": "N_s - N_uo, neurons of a prompt's set no other paraphrase finds", "percent": False,
                "paper": {f"LAND, {m}": float(a - b) for m, a, b in zip(models, t4["N_s"], t4["N_uo"])}}
    elif chapter == "overlap" and name == "refined sets share within relations":
        d = paper.DAI_TABLE2.iloc[0]
        meta = {"axis": "refined neurons shared, same relation minus two relations", "percent": False,
                "paper": {"Dai et al., BERT-base": float(d["intra_relation"] - d["inter_relation"])}}
    elif chapter == "land" and name.startswith("LAND's overlap"):  # the name may say at which read-out
        t7 = paper.LAND_TABLE7
        meta = {"axis": "R_Lo, Jaccard of two paraphrases' LAND sets", "percent": True,
                "bound": paper.LAND_OVERLAP_CLAIM,
                "paper": {f"LAND, {s.split(', ')[1]}": float(v) for s, v in t7["R_Lo"].items()}}
    elif chapter == "land" and name == "LAND is specific to the fact":
        # bound 0: a claim with a direction (above 0), so an interval the test does not back reads "not distinguishable"
        meta = {"axis": "fact-specific overlap of LAND's sets (within fact minus same relation)", "percent": True,
                "bound": 0.0}
    elif chapter == "land" and name.startswith("LAND beats the "):
        meta = {"axis": f"fact-specific overlap, LAND minus the {name.removeprefix('LAND beats the ')}",
                "percent": True, "bound": 0.0}
    elif chapter == "amplification" and pair:
        condition, a, b = pair.groups()
        if "log" in family:  # the primary family: the facts' mean log(P after / P before); the papers report none
            meta = {"axis": f"mean log(P after / P before) on {condition} prompts, {a} minus {b}", "percent": False,
                    "unit": "difference in mean log(P after / P before), A minus B"}
        else:  # an older record: mean change rates, as LAND's Table 9
            meta = {"axis": f"mean change rate on {condition} prompts, {a} minus {b}", "percent": False,
                    "paper": _paper_difference(paper.LAND_TABLE9, condition, a, b)}
    elif chapter == "editing" and pair:
        condition, a, b = pair.groups()
        meta = {"axis": f"success rate on {condition} prompts, {a} minus {b}", "percent": True,
                "paper": _paper_difference(paper.LAND_TABLE10, condition, a, b),
                "unit": "difference in edit success, A minus B" if family else None}
    elif chapter == "editing" and name.endswith("'s edit is specific"):
        meta = {"axis": "success on Same minus success on Unrelated, net of Before", "percent": True,
                "unit": "success on Same minus success on Unrelated (net of Before)"}
    elif chapter == "editing" and name == "erasing is specific":
        meta = {"axis": "erased relation's perplexity change beyond the others', refined minus random neurons",
                "percent": True}
    elif chapter == "choices" and name == "which neuron":
        meta = {"axis": "P(answer) change when silenced, the papers' neurons minus pre-activations", "percent": True}
    meta["unit"] = meta.get("unit") or meta["axis"]
    return meta


def verdict(chapter: str, claim) -> str | None:
    """One word for a Claim: a declared family's contrast "A vs B" reads "favours A" / "favours B" (in the direction
    its condition wants: on Unrelated prompts lower is better) or "not distinguishable"; another claim with a verdict
    "holds" / "does not hold" ("does not hold" only where the opposite was shown); else, with an interval, "not
    distinguishable" for a claim with a direction (or against a paper's figure whose interval covers it) and, for a
    claim that states no direction, "differs" where its interval excludes zero; None without an interval or a
    verdict."""
    if getattr(claim, "family", "") and claim.interval is not None:
        return {True: "favours A", False: "favours B", None: "not distinguishable"}[claim.holds]
    if claim.holds is not None:
        return "holds" if claim.holds else "does not hold"
    if claim.interval is None:
        return None
    directed = bool(getattr(claim, "family", "")) or _claim_meta(chapter, claim).get("bound") is not None
    if not directed and claim.interval.excludes_zero and claim.interval.decidable:
        return "differs"
    return "not distinguishable"


def _favours(claim) -> str:
    """ "favours <A>" / "favours <B>" / "not distinguishable" with the methods' names, for a primary contrast."""
    pair = _PAIR.match(claim.name)
    if claim.holds is None or not pair:
        return "not distinguishable"
    return f"favours {pair.group(2) if claim.holds else pair.group(3)}"


def _family_title(chapter: str, family: str, has_primary: bool) -> str:
    if family:
        return f"{family[0].upper()}{family[1:]} (the declared family, Holm-corrected)"
    return FAMILIES[chapter] + (", further claims" if has_primary else "")


def forest_data(runs: list[Run]) -> pd.DataFrame:
    """One row per claim with an interval, per run (see the module docstring), in chapter order, a chapter's declared
    family (Claim.family) first."""
    rows = []
    for chapter in FAMILIES:
        for r in runs:
            summary = getattr(r, chapter)
            claims = summary.claims if summary else []
            has_primary = any(getattr(c, "family", "") for c in claims)
            for c in claims:
                if c.interval is None or math.isnan(c.interval.mean):
                    continue
                meta = _claim_meta(chapter, c)
                family = getattr(c, "family", "") or ""
                rows.append({"family": _family_title(chapter, family, has_primary), "chapter": chapter,
                             "primary": bool(family), "claim": c.name, "run": r.short, "mean": c.interval.mean,
                             "lo": c.interval.lo, "hi": c.interval.hi, "verdict": verdict(chapter, c),
                             "p_holm": getattr(c, "p_holm", None), "paper": meta.get("paper") or None,
                             "bound": meta.get("bound"), "axis": meta["axis"], "unit": meta["unit"],
                             "percent": meta["percent"]})
    columns = ["family", "chapter", "primary", "claim", "run", "mean", "lo", "hi", "verdict", "p_holm", "paper",
               "bound", "axis", "unit", "percent"]
    frame = pd.DataFrame(rows, columns=columns)
    if frame.empty:
        return frame
    # chapters in order, a declared family before the chapter's other claims, claims as the chapter states them
    chapter_rank = {c: i for i, c in enumerate(FAMILIES)}
    order = {key: i for i, key in enumerate(dict.fromkeys(zip(frame["family"], frame["claim"])))}
    frame["_order"] = [(chapter_rank[c], not p, order[(f, n)])
                       for c, p, f, n in zip(frame["chapter"], frame["primary"], frame["family"], frame["claim"])]
    return frame.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def forest_families(runs: list[Run]) -> list[tuple[str, pd.DataFrame]]:
    """[(family title, its rows of forest_data)] for every family where some run has a claim with an interval: a
    chapter's declared family of primary contrasts, and the chapter's other claims."""
    frame = forest_data(runs)
    return [(title, frame[frame["family"] == title].reset_index(drop=True))
            for title in dict.fromkeys(frame["family"])]


def across_models(runs: list[Run]) -> pd.DataFrame:
    """Each claim that carries a verdict (Claim.holds), run by run (the interval it rests on). Only the declared primary
    contrasts (Claim.family, Holm-corrected within it) are counted across runs: for every run, for some, or for none
    ("not distinguishable" runs count as neither); every other claim reads "exploratory: not counted" (chapters 5, 6) or "a single check of the paper: not
    counted" (chapters 2b-4). A claim that
    states no direction (holds None, with an interval) reads "differs" where its interval excludes zero."""
    rows: dict = {}
    primary: dict = {}
    for r in runs:
        for chapter in ("choices", "overlap", "land", "amplification", "editing"):
            summary = getattr(r, chapter)
            for c in (summary.claims if summary else []):
                cell = verdict(chapter, c)
                if cell is None:
                    continue
                if c.family:
                    cell = _favours(c)
                if c.interval is not None:
                    cell += f": {c.interval.format('{:.2f}')}"
                rows.setdefault((chapter, c.name), {})[r.label] = (cell, c.holds)
                primary.setdefault((chapter, c.name), set()).add(c.family)
    out = {}
    for key, by_run in rows.items():
        verdicts = [h for _, h in by_run.values()]
        differs = sum(text.startswith("differs") for text, _ in by_run.values())
        if differs and all(v is None for v in verdicts):  # a claim without a direction: no holds to count
            out[key] = {**{run: text for run, (text, _) in by_run.items()},
                        "across runs": f"differs in {differs} of {len(verdicts)} runs"}
            continue
        if primary[key] == {""}:
            why = "exploratory" if key[0] in ("amplification", "editing") else "a single check of the paper"
            out[key] = {**{run: text for run, (text, _) in by_run.items()}, "across runs": f"{why}: not counted"}
            continue
        pair = _PAIR.match(key[1])
        if pair and primary[key] != {""}:  # a primary contrast: which method it favours, run by run
            a, b = pair.group(2), pair.group(3)
            n_a, n_b = sum(v is True for v in verdicts), sum(v is False for v in verdicts)
            summary = (f"favours {a} in every run" if n_a == len(verdicts) else
                       f"favours {b} in every run" if n_b == len(verdicts) else
                       f"favours {a} in {n_a}, {b} in {n_b}, not distinguishable in {len(verdicts) - n_a - n_b} "
                       f"of {len(verdicts)} runs")
        else:
            summary = ("holds for every run" if all(v is True for v in verdicts) else
                       "does not hold for any run" if all(v is False for v in verdicts) else
                       "holds for none" if all(v is not True for v in verdicts) else
                       f"holds for {sum(v is True for v in verdicts)} of {len(verdicts)} runs")
        out[key] = {**{run: text for run, (text, _) in by_run.items()}, "across runs": summary}
    frame = pd.DataFrame.from_dict(out, orient="index")
    if not frame.empty:
        frame.index = pd.MultiIndex.from_tuples(frame.index, names=["chapter", "claim"])
    return frame


def primary_counts(runs: list[Run]) -> pd.DataFrame:
    """[family x run]: of the family's primary contrasts "A vs B", how many favour A, favour B or are not
    distinguishable after Holm's correction within the family (Claim.holds: True favours A, in the direction of the
    contrast's condition, so that more leakage on Unrelated prompts never counts for the method that leaks)."""
    rows: dict = {}
    for r in runs:
        for chapter in ("amplification", "editing"):
            summary = getattr(r, chapter)
            for c in (summary.claims if summary else []):
                if not c.family:
                    continue
                cell = rows.setdefault(c.family, {}).setdefault(r.label, [0, 0, 0])
                cell[0 if c.holds is True else 1 if c.holds is False else 2] += 1
    out = {family: {run: f"{a} favour A, {b} favour B, {n} not distinguishable (of {a + b + n})"
                    for run, (a, b, n) in by_run.items()} for family, by_run in rows.items()}
    return pd.DataFrame.from_dict(out, orient="index")


def power_lines(runs: list[Run]) -> pd.DataFrame:
    """Per primary claim and run: the effect the paper reports (GPT-2) on the scale of the claim's test, the test facts
    needed to detect it at 80% power at Holm's first-step level with the run's design effect, the run's test facts
    and clusters, and the smallest difference the run could detect (none where its floor is above the level)."""
    rows = []
    for r in runs:
        for chapter, label in (("amplification", "chapter 5"), ("editing", "chapter 6")):
            summary = getattr(r, chapter)
            for row in (getattr(summary, "power", None) or []) if summary else []:
                rows.append({"run": r.label, "chapter": label, **row})
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame(rows)
    frame["test facts needed (80% power)"] = frame["test facts needed (80% power)"].map(
        lambda n: "no paper effect" if n is None or np.isnan(n) else
        "never (no effect)" if not np.isfinite(n) else f"{int(np.ceil(n)):,}")
    if "smallest detectable difference here" in frame:
        frame["smallest detectable difference here"] = frame["smallest detectable difference here"].map(
            lambda d: "none (the design's floor is above the level)" if d is None or not np.isfinite(d) else
            f"{d:.3g}")
    return frame.set_index(["chapter", "claim", "run"])

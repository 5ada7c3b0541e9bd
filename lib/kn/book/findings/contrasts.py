"""kn.book.findings.contrasts: the declared primary contrasts of chapters 5 and 6 (McNemar's exact test or a cluster
bootstrap per pair, Holm within each chapter's family), exact rates, specificity and power.

API
    primary_pairs() -> [(A, B)]   the declared family of chapters 5 and 6 (per condition): LAND vs KN-refined and LAND
        vs Baseline, each net of its own random control (difference-in-differences: size-fair), and each of Baseline,
        KN-refined and LAND vs its random control; Holm-corrected within each chapter
    net_name(method) -> "LAND, net of its random control";  NET  the suffix
    DIRECTION {condition: "higher" | "lower"}   what a working method does (on Unrelated, lower is better)
    Every primary contrast is decided on the FACT (its probes averaged) with relation clusters: the exact cluster
    sign-flip test (kn.base.stats.cluster_sign_flip_p) and the cluster interval must agree, from two clusters or more.
    log_ratio_contrasts(results, *, n_boot, seed, sizes=None) -> DataFrame   chapter 5's family on log(P_after / P_before)
    table9_readings(amplify) -> DataFrame      the paper's Table 9 read as ratios and as percents, beside ours
    edit_rates(edits, variant="paper") -> {method: {condition: Rate}}   probe-level exact rates (descriptive)
    edit_contrasts(edits, *, n_boot, seed, sizes=None) -> DataFrame   chapter 6's family on per-fact success, Holm
    specificity_table(edits, *, n_boot, seed) -> DataFrame     Same minus Unrelated success, each net of Before
    power_rows(contrasts, chapter) -> [dict]   facts needed at Holm's level with the design effect; the run's MDE
    favour_words(holds, a, b) -> "favours a" | "favours b" | "not distinguishable here"
    rates_table(rates), contrasts_table(contrasts), power_table(rows) -> DataFrame   the same, for the page
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kn.base import paper
from kn.base.clustered import (
    cluster_column,
    cluster_sign_flip_p,
    design_effect,
    facts_needed,
    min_detectable_effect,
    min_sign_flip_p,
)
from kn.base.stats import Interval, cluster_bootstrap_mean, cluster_paired_difference, holm, mcnemar_exact, rate
from kn.experiments.amplification import per_fact
from kn.experiments.conditions import (
    CONDITIONS,
    METHODS,
    PRIMARY,
    method_names,
    random_name,
)

# --------------------------------------------------------------------------- chapters 5 and 6


def _method_pairs() -> list[tuple[str, str]]:
    land = METHODS["land"]
    return ([(land, METHODS["kn_refined"]), (land, METHODS["baseline"]), (land, METHODS["relation_prior"]),
             (land, METHODS["nearest_neighbour"])] + [(name, random_name(key)) for key, name in METHODS.items()])


NET = ", net of its random control"  # the size-fair reading of a method in the primary family
_KEY = {name: key for key, name in METHODS.items()}


def net_name(method: str) -> str:
    """"LAND" -> "LAND, net of its random control": the method's per-fact outcome minus that of its own random control
    (the same number of neurons in every layer), so that a contrast between two methods is not decided by how many
    neurons each set holds (difference-in-differences)."""
    return f"{method}{NET}"


def primary_pairs() -> list[tuple[str, str]]:
    """Per condition: LAND against KN-refined and against Baseline, each net of its own random control (a method's
    set size moves its effect, and the papers' sets differ in size: LAND ~1.2 N_s, KN-refined 2-5, Baseline N_s), and
    each of Baseline, KN-refined and LAND against its random control. The raw contrasts at the papers' own sizes are
    shown beside, exploratory."""
    land = METHODS["land"]
    return ([(net_name(land), net_name(METHODS["kn_refined"])), (net_name(land), net_name(METHODS["baseline"]))]
            + [(METHODS[k], random_name(k)) for k in PRIMARY])


def _parts(name: str) -> tuple[str, str | None]:
    """(method, its random control) for a net name, (name, None) otherwise."""
    if name.endswith(NET):
        method = name.removesuffix(NET)
        return method, random_name(_KEY[method])
    return name, None


def _size_note(a: str, b: str, sizes: dict | None) -> str:
    """" (LAND 25.8 and KN-refined 3.9 neurons, each against a random control of its own size)" for a net pair."""
    (ma, ra), (mb, rb) = _parts(a), _parts(b)
    if ra is None or rb is None:
        return ""
    shown = " and ".join(f"{m} {sizes[m]:.1f}" for m in (ma, mb) if sizes and m in sizes)
    return f" ({shown + ' neurons, ' if shown else ''}each against a random control of its own size)"


# The direction a method should move each condition's outcome: an edit or amplification that works raises the
# answer on the prompts it targets (Same, Related) and leaves Unrelated prompts alone (there, lower is better).
DIRECTION = {"Same": "higher", "Related": "higher", "Unrelated": "lower"}
ALPHA = 0.05


def _verdict(a: str, b: str, difference: Interval, p_holm: float, fmt: str, direction: str,
             ) -> tuple[bool | None, str]:
    """(holds, words): True when the contrast favours A, False when it favours B, None when not distinguishable. It
    is decided only when Holm's p is below 0.05 AND the cluster interval excludes 0 on the same side, from at least
    two clusters; "favours" reads the difference in the condition's DIRECTION (on Unrelated, lower is better)."""
    if math.isnan(difference.mean):
        return None, f"{a} and {b} cannot be compared here"
    text = difference.format(fmt)
    if not difference.decidable:
        return None, f"{a} and {b} are not distinguishable here (difference {text}; fewer than two clusters)"
    if not (p_holm < ALPHA and difference.excludes_zero):
        why = ("; Holm's p is below 0.05, the interval covers 0" if p_holm < ALPHA else
               "; the interval excludes 0, Holm's p is not below 0.05" if difference.excludes_zero else "")
        return None, f"{a} and {b} are not distinguishable here (difference {text}{why})"
    higher = difference.mean > 0
    favours_a = higher if direction == "higher" else not higher
    winner = a if favours_a else b
    verb = "exceeds" if higher else "falls below"
    return favours_a, f"{a} {verb} {b} by {text}: favours {winner} ({direction} is better)"


def _contrast_row(condition: str, a: str, b: str, diff, clusters, *, n_boot: int, seed: int, bounds=None) -> dict:
    """One primary contrast: the per-fact differences' cluster interval, the exact cluster sign-flip p, and what
    power needs (per-fact SD, the design effect of the clusters, the test's floor)."""
    diff = np.asarray(diff, dtype=np.float64)
    clusters = np.asarray(clusters)
    ok = ~np.isnan(diff)
    interval = cluster_bootstrap_mean(diff, clusters, n_boot=n_boot, seed=seed, bounds=bounds)
    effect, icc = design_effect(diff, clusters)
    return {"condition": condition, "A": a, "B": b, "direction": DIRECTION[condition], "difference": interval,
            "p": cluster_sign_flip_p(diff, clusters), "n_facts": int(ok.sum()),
            "n_clusters": len(set(clusters[ok].tolist())), "sd": float(np.nanstd(diff, ddof=1)) if ok.sum() > 1
            else float("nan"), "design_effect": effect, "icc": icc}


def _wide_value(wide: pd.DataFrame, name: str) -> np.ndarray | None:
    """A primary name's per-fact values of a [fact x method] frame (a net name: the method minus its random control);
    None where a method is missing."""
    method, control = _parts(name)
    if method not in wide or (control is not None and control not in wide):
        return None
    values = wide[method].to_numpy(float)
    return values - wide[control].to_numpy(float) if control is not None else values


def log_ratio_contrasts(results: pd.DataFrame, *, n_boot: int, seed: int, sizes: dict | None = None) -> pd.DataFrame:
    """Chapter 5's primary family on the amplification: per condition and pair of :func:`primary_pairs`, the paired
    difference of the facts' mean log(P_after / P_before) (a net name: minus its random control's; cluster interval:
    relations, merged where they share prompts, then facts) and the exact cluster sign-flip p, Holm-corrected over
    the family. A log ratio is not carried by the few facts whose P was tiny before, as a mean change rate is.
    ``sizes`` {method: mean neurons}: named in the sentences of the net contrasts."""
    part = per_fact(results[(results["action"] == "amplify") & np.isfinite(results["log_ratio"])], "log_ratio")
    cluster_of = dict(zip(part["fact_id"], cluster_column(part)))
    rows = []
    for condition in CONDITIONS:
        wide = part[part["condition"] == condition].pivot_table(index="fact_id", columns="method", values="log_ratio")
        clusters = np.array([cluster_of[f] for f in wide.index])
        for a, b in primary_pairs():
            va, vb = _wide_value(wide, a), _wide_value(wide, b)
            if va is None or vb is None:
                continue
            rows.append(_contrast_row(condition, a, b, va - vb, clusters, n_boot=n_boot, seed=seed))
    return _holm_family(rows, "{:+.2f}", lambda r, words: (
        f"{r.condition}: {words} in log(P after / P before){_size_note(r.A, r.B, sizes)} (cluster sign-flip p = "
        f"{r.p:.3g}, Holm {r.p_holm:.3g}, {r.n_facts} facts in {r.n_clusters} clusters)."))


def _holm_family(rows: list[dict], fmt: str, sentence) -> pd.DataFrame:
    """A declared family's table: Holm's correction over its rows' p, each row's verdict (holds: favours A / favours
    B / None) and its sentence, ``sentence(row, verdict words)``; ``floor`` is the smallest p the design allows
    (min_sign_flip_p of the row's clusters) and ``holm_level`` the level Holm's first step needs (0.05 / m)."""
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = holm(table["p"].to_numpy())
    table["floor"] = [min_sign_flip_p(k) for k in table["n_clusters"]]
    table["holm_level"] = ALPHA / len(table)
    words = [_verdict(r.A, r.B, r.difference, r.p_holm, fmt, r.direction) for r in table.itertuples()]
    table["holds"] = [w[0] for w in words]
    table["sentence"] = [sentence(r, w[1]) for r, w in zip(table.itertuples(), words)]
    return table


def log_ratio_table(results: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """[method x condition] mean log(P_after / P_before) of the amplification over facts, cluster intervals."""
    part = per_fact(results[(results["action"] == "amplify") & np.isfinite(results["log_ratio"])], "log_ratio")
    rows = {}
    for (method, condition), g in part.groupby(["method", "condition"]):
        rows.setdefault(method, {})[condition] = cluster_bootstrap_mean(g["log_ratio"].to_numpy(),
                                                                        cluster_column(g).to_numpy(),
                                                                        n_boot=n_boot, seed=seed)
    return pd.DataFrame.from_dict(rows, orient="index").loc[[m for m in method_names() if m in rows], list(CONDITIONS)]


def table9_readings(amplify: dict) -> pd.DataFrame:
    """The paper's Table 9 under both readings of its unit: as ratios (2.48 = +248%) and as percents (2.48 = +2.48%),
    beside our mean change rate (a ratio), for the three methods and conditions."""
    rows = []
    for model, part in paper.LAND_TABLE9.groupby("model", sort=False):
        for r in part.itertuples():
            rows.append({"source": f"LAND, {model}, read as ratios", "method": r.method,
                         **{c: getattr(r, c) for c in CONDITIONS}})
            rows.append({"source": f"LAND, {model}, read as percents", "method": r.method,
                         **{c: getattr(r, c) / 100 for c in CONDITIONS}})
    for method in (METHODS["baseline"], METHODS["kn_refined"], METHODS["land"]):
        if method in amplify:
            rows.append({"source": "ours (a ratio)", "method": method,
                         **{c: amplify[method][c].mean for c in CONDITIONS}})
    return pd.DataFrame(rows).set_index(["source", "method"])


def _outcomes(edits: pd.DataFrame, method: str, condition: str) -> dict:
    part = edits[edits["method"] == method]
    return dict(zip(part["fact_id"], (list(o) for o in part[f"outcomes_{condition}"])))


def edit_rates(edits: pd.DataFrame, variant: str = "paper") -> dict:
    """{method: {condition: Rate}}: PROBE LEVEL, descriptive: the share of probe outcomes whose top-1 became t', with
    the exact (Clopper-Pearson) interval a binomial over probes would have, for the papers' sets (and Before) or one
    variant ("top 5", "scaled λ"). A fact's probes are not independent outcomes: the book's rates and verdicts are over
    facts in clusters (kn.book.findings.editing.rate_table); this one is shown beside them, labelled as such."""
    part = edits[edits["variant"].isin(["paper", "before"] if variant == "paper" else [variant])]
    return {m: {c: rate([x for o in g[f"outcomes_{c}"] for x in o]) for c in CONDITIONS}
            for m, g in part.groupby("method", sort=False)}


def _fact_success(edits: pd.DataFrame, name: str, condition: str) -> dict:
    """{fact_id: success share of its probes} of a primary name (a net name: minus its random control's)."""
    method, control = _parts(name)
    mine = {f: float(np.mean(o)) for f, o in _outcomes(edits, method, condition).items()}
    if control is None:
        return mine
    theirs = {f: float(np.mean(o)) for f, o in _outcomes(edits, control, condition).items()}
    return {f: v - theirs[f] for f, v in mine.items() if f in theirs}


def edit_contrasts(edits: pd.DataFrame, *, n_boot: int, seed: int, sizes: dict | None = None) -> pd.DataFrame:
    """Chapter 6's primary family: per condition and pair of :func:`primary_pairs`, each fact's success share (its
    probes averaged; a net name: minus its random control's) for A minus B, the exact cluster sign-flip test on those
    per-fact differences (relations, merged where they share prompts, are the clusters), their cluster interval, Holm
    over the family. McNemar's discordant probe counts are kept beside a method-vs-control pair, descriptive only
    (probes of a fact are not independent). On Unrelated, lower is better. ``sizes`` {method: mean neurons}: named in
    the sentences of the net contrasts."""
    cluster_of = dict(zip(edits["fact_id"], cluster_column(edits)))
    rows = []
    for condition in CONDITIONS:
        for a, b in primary_pairs():
            value_a, value_b = _fact_success(edits, a, condition), _fact_success(edits, b, condition)
            facts = [f for f in value_a if f in value_b]
            if not facts:
                continue
            diff = [value_a[f] - value_b[f] for f in facts]
            net = _parts(a)[1] is not None
            row = _contrast_row(condition, a, b, diff, [cluster_of[f] for f in facts], n_boot=n_boot, seed=seed,
                                bounds=(-2.0, 2.0) if net else (-1.0, 1.0))
            if net:  # probes of a difference-in-differences have no McNemar table
                rows.append(row | {"a_only": None, "b_only": None, "n": None})
                continue
            out_a, out_b = _outcomes(edits, a, condition), _outcomes(edits, b, condition)
            probes = mcnemar_exact([x for f in facts for x in out_a[f]], [x for f in facts for x in out_b[f]])
            rows.append(row | {"a_only": probes.a_only, "b_only": probes.b_only, "n": probes.n})
    return _holm_family(rows, "{:+.0%}", lambda r, words: (
        f"{r.condition}: {words} in edit success per fact{_size_note(r.A, r.B, sizes)} (cluster sign-flip p = "
        f"{r.p:.3g}, Holm {r.p_holm:.3g}, {r.n_facts} facts in {r.n_clusters} clusters"
        + (f"; probes, descriptive: {r.a_only} vs {r.b_only} discordant of {r.n})." if r.n is not None
           and not pd.isna(r.n) else ").")
        + (" On Unrelated prompts more success means more leakage." if r.condition == "Unrelated" else "")))


def specificity_table(edits: pd.DataFrame, *, n_boot: int, seed: int) -> pd.DataFrame:
    """Per method: success on the Same prompt net of Before minus success on the Unrelated prompts net of Before (each
    condition's top-1 that was t' already subtracted on both sides), paired over facts, cluster interval and exact
    cluster sign-flip p: an edit is specific when both say the difference is positive, from two clusters or more."""
    before = edits[edits["method"] == "Before"].set_index("fact_id")
    rows = {}
    for method in [METHODS[k] for k in PRIMARY] + [random_name(k) for k in PRIMARY]:
        g = edits[edits["method"] == method]
        if g.empty:
            continue
        same = g["success_Same"].to_numpy(float) - g["fact_id"].map(before["success_Same"]).to_numpy(float)
        leak = g["success_Unrelated"].to_numpy(float) - g["fact_id"].map(before["success_Unrelated"]).to_numpy(float)
        clusters = cluster_column(g).to_numpy()
        interval = cluster_paired_difference(same, leak, clusters, n_boot=n_boot, seed=seed, bounds=(-2.0, 2.0))
        p = cluster_sign_flip_p(same - leak, clusters)
        specific = interval.decidable and interval.lo > 0 and p < ALPHA
        rows[method] = {"Same minus Unrelated (net)": interval, "p": p,
                        "verdict": "specific" if specific else ("leaks as much as it edits" if interval.decidable and
                                                               interval.hi < 0 and p < ALPHA else
                                                               "not distinguishable here")}
    return pd.DataFrame.from_dict(rows, orient="index")


def rates_table(rates: dict) -> pd.DataFrame:
    """[method x condition] of kn.base.stats.Rate (shown as "22% [7%, 41%] (6/27)"), methods in table order."""
    frame = pd.DataFrame.from_dict(rates, orient="index")[list(CONDITIONS)]
    return frame.loc[_edit_order(frame.index) + [m for m in frame.index if m not in _edit_order(frame.index)]]


def favour_words(holds, a: str, b: str) -> str:
    """The tally word of a primary contrast: favours A / favours B / not distinguishable (never "holds" for more
    leakage: the direction is the condition's)."""
    return {True: f"favours {a}", False: f"favours {b}", None: "not distinguishable here"}[holds]


def contrasts_table(contrasts: pd.DataFrame, fmt: str = "{:+.0%}") -> pd.DataFrame:
    """The primary family as a table in words: the direction, the difference (per fact, cluster interval), the exact
    cluster test, Holm's p, the test's floor against Holm's first-step level, and the verdict (favours A / B)."""
    rows = []
    for r in contrasts.itertuples():
        row = {"condition": r.condition, "A": r.A, "B": r.B, "better": r.direction,
               "difference A - B": r.difference.format(fmt), "facts (clusters)": f"{r.n_facts} ({r.n_clusters})"}
        if hasattr(r, "a_only"):
            row |= {"probes A only / B only (descriptive)": "–" if r.n is None or pd.isna(r.n) else
                    f"{int(r.a_only)} / {int(r.b_only)} of {int(r.n)}"}
        rows.append(row | {"p": f"{r.p:.3g}", "Holm p": f"{r.p_holm:.3g}",
                           "smallest p possible": f"{r.floor:.2g} (Holm needs {r.holm_level:.2g})",
                           "verdict": favour_words(r.holds, r.A, r.B)})
    return pd.DataFrame(rows).set_index(["condition", "A", "B"])


def power_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index("claim") if rows else pd.DataFrame()


def _paper_effect(chapter: str, a: str, b: str, condition: str) -> float:
    """The paper's (LAND's GPT-2) difference A - B on the scale of the chapter's test: success (a share) for chapter
    6, log(1 + CR_A) - log(1 + CR_B) for chapter 5 (Table 9 read as ratios: the mean log ratio of a method whose
    change rate is CR on every fact); nan where the paper has no such pair."""
    reference = paper.LAND_TABLE10 if chapter == "06" else paper.LAND_TABLE9
    gpt2 = reference[reference["model"] == "GPT-2"].set_index("method")
    # a net pair plans for the papers' raw difference: they report no random control of LAND's or KN-refined's size,
    # and a claim that one method's neurons beat the other's is that difference once the size is accounted for
    a, b = _parts(a)[0], _parts(b)[0]
    if a not in gpt2.index or b not in gpt2.index:
        return float("nan")
    va, vb = float(gpt2.loc[a, condition]), float(gpt2.loc[b, condition])
    return va - vb if chapter == "06" else math.log1p(va) - math.log1p(vb)


def power_rows(contrasts: pd.DataFrame, chapter: str, results: pd.DataFrame | None = None) -> list[dict]:
    """For every primary contrast, for the test it is decided by (the cluster sign-flip test on per-fact differences:
    edit success for chapter 6, the log ratio for chapter 5), at the level Holm's first step needs (0.05 / family
    size), with the design effect of the run's relation clusters: the paper's GPT-2 effect where it has one, the test
    facts needed to detect it at 80% power given the per-fact SD measured here, and the smallest difference this run
    could detect at its own n (inf where the test's floor is above the level: no difference could be declared).
    ``results`` is not needed (kept for the notebooks' calls)."""
    rows = []
    for r in contrasts.itertuples():
        alpha = float(r.holm_level)
        effect = _paper_effect(chapter, r.A, r.B, r.condition)
        needed = (facts_needed(effect, r.sd, alpha=alpha, design_effect=r.design_effect)
                  if not math.isnan(effect) and not math.isnan(r.sd) else float("nan"))
        mde = min_detectable_effect(r.sd, r.n_facts, r.n_clusters, alpha=alpha, design_effect=r.design_effect)
        rows.append({"claim": f"{r.condition}: {r.A} vs {r.B}", "paper effect (GPT-2)": effect,
                     "test facts needed (80% power)": needed, "test facts here": r.n_facts,
                     "clusters here": r.n_clusters, "design effect": r.design_effect,
                     "smallest detectable difference here": mde, "level (Holm's first step)": alpha})
    return rows


def _edit_order(present) -> list[str]:
    return [m for m in ["Before"] + method_names() if m in set(present)]

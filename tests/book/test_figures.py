"""kn.book.figures.axes: every figure function, drawn on small synthetic summaries, leaves no tick labels on top of each other,
draws the intervals it is given, and computes its caption from the data (two data sets, two captions)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import seaborn as sns
from kn.base import paper
from kn.base.stats import Interval
from kn.book import figures
from kn.book.figures import land as land_figures
from kn.book.report import STYLE

sns.set_theme(**STYLE)  # the book's style: its fonts and grids are what the labels are measured in

CONDITIONS = ["Same", "Related", "Unrelated"]
METHODS = ["Before", "Baseline", "Random (Baseline)", "KN-refined", "Random (KN-refined)", "LAND", "Random (LAND)",
           "Relation prior", "Random (Relation prior)", "Nearest neighbour", "Random (Nearest neighbour)", "Constant",
           "Random (Constant)"]


def _interval(rng, mean, spread):
    return Interval(mean, mean - spread * rng.uniform(0.3, 1), mean + spread * rng.uniform(0.3, 1), 12, mean)


def _sweep_t(seed):
    rng = np.random.default_rng(seed)
    t = [0.1, 0.2, 0.3, 0.4, 0.5]
    n_s = np.sort(rng.uniform(5, 80, 5))[::-1]
    return pd.DataFrame({"N_s": n_s, "N_u": 4 * n_s, "R_so": rng.uniform(0.1, 0.4, 5), "R_uo": rng.uniform(0.1, 0.4, 5)},
                        index=pd.Index(t, name="t"))


def _sweep_p(seed, grid=(0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0)):
    rng = np.random.default_rng(seed)
    within = np.sort(rng.uniform(0.2, 0.6, len(grid)))
    across = within - rng.uniform(0.0, 0.2, len(grid))
    return pd.DataFrame({"within": within, "across_same_relation": across, "across_other_relation": across / 2,
                         "fact_specific": within - across, "size": np.sort(rng.uniform(0.5, 40, len(grid)))[::-1],
                         "empty": rng.uniform(0, 0.2, len(grid))}, index=pd.Index(list(grid), name="P"))


def _losses(seed, falls=True):
    rng = np.random.default_rng(seed)
    train = np.linspace(0.012, 0.006 if falls else 0.0121, 10) + rng.normal(0, 1e-4, 10)
    epochs = pd.DataFrame({"train": train, "validation": np.nan}, index=pd.RangeIndex(1, 11, name="epoch"))
    trivial = pd.DataFrame({"train": [0.0105, 0.0095, 0.0090], "test": [0.0110, 0.0101, 0.0098]},
                           index=list(land_figures._TRIVIAL.values()))
    return figures.TrainingLosses(epochs, {"train": float(train[-1]), "test": 0.0108 + rng.uniform(-0.002, 0.001)},
                                  trivial)


def _curve(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for setting in ("paper's optimiser", "this run's"):
        for fraction, n in ((0.125, 40), (0.25, 80), (0.5, 160), (1.0, 320)):
            rows.append({"setting": setting, "fraction": fraction, "n_train_facts": n // 10, "n_train_prompts": n,
                         "size": rng.uniform(2, 20), "within": rng.uniform(0.2, 0.8),
                         "across_same_relation": rng.uniform(0.1, 0.3), "across_other_relation": 0.05,
                         "fact_specific": rng.uniform(-0.05, 0.3)})
    return pd.DataFrame(rows)


def _rates(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({c: [_interval(rng, scale * rng.uniform(0, 0.6), abs(scale) * 0.15) for _ in METHODS]
                         for c in CONDITIONS}, index=METHODS)


def _paper10():
    table = paper.LAND_TABLE10.set_index(["model", "method"])
    return {f"LAND, {m}": table.loc[m] for m in ("GPT-2", "Llama-3.2-1B")}


def _relations(seed):
    rng = np.random.default_rng(seed)
    methods = ["Baseline", "KN-refined", "Random (Baseline)", "Random (KN-refined)"]
    rows = []
    for action, sign in (("suppress", -1), ("amplify", 1)):
        for relation in ("P176", "P178", "P19", "P20", "P27", "P30", "P31", "P36"):
            for method in methods:
                for fact in range(3):
                    rows.append({"action": action, "relation": relation, "method": method, "condition": "Same",
                                 "fact_id": f"{relation}-{fact}", "change_rate": sign * rng.uniform(0, 1)})
    return figures.relation_change(pd.DataFrame(rows), methods, n_boot=200, seed=seed)


def _forest(seed):
    rng = np.random.default_rng(seed)
    rows = []
    for claim, axis, percent, bound, values in (
            ("paraphrases overlap little", "R_so", True, 0.5, {"LAND, GPT-2": 0.2097, "LAND, Llama-3.2-1B": 0.2276}),
            ("N_uo is not N_s", "N_s - N_uo, neurons", False, None, {"LAND, GPT-2": 1.91}),
            ("refined sets share within relations", "difference", False, None, None)):
        for run in ("smoke (smollm2-135m)", "smollm2-135m", "gemma3-270m"):
            mean = rng.uniform(-0.5, 2) if not percent else rng.uniform(0.1, 0.6)
            spread = rng.uniform(0.05, 0.5)
            lo, hi = mean - spread, mean + spread
            verdict = "not distinguishable" if lo <= 0 <= hi else ("holds" if mean > 0 else "does not hold")
            rows.append({"family": "overlap", "chapter": "overlap", "primary": False, "claim": claim, "run": run,
                         "mean": mean, "lo": lo, "hi": hi, "verdict": verdict, "p_holm": None, "paper": values,
                         "bound": bound, "axis": axis, "unit": axis, "percent": percent})
    return pd.DataFrame(rows)


def _primary_forest(seed):
    """A declared family: one unit, Holm p per row, the paper's value on some rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for condition in CONDITIONS:
        for a, b in (("LAND", "KN-refined"), ("LAND", "Baseline"), ("LAND", "Random (LAND)")):
            mean, spread = rng.uniform(-0.2, 0.3), rng.uniform(0.02, 0.2)
            p_holm = float(rng.uniform(0.001, 1))
            verdict = "holds" if p_holm < 0.05 and mean > 0 else "not distinguishable"
            paper = {"LAND, GPT-2": rng.uniform(0, 0.1)} if b != "Random (LAND)" else None
            rows.append({"family": "chapter 6: edit success", "chapter": "editing", "primary": True,
                         "claim": f"{condition}: {a} vs {b}", "run": "smoke (smollm2-135m)", "mean": mean,
                         "lo": mean - spread, "hi": mean + spread, "verdict": verdict, "p_holm": p_holm,
                         "paper": paper, "bound": None, "axis": f"success, {a} minus {b}",
                         "unit": "difference in edit success, A minus B", "percent": True})
    return pd.DataFrame(rows)


def _templates(seed):
    rng = np.random.default_rng(seed)
    kept = rng.integers(4, 11, 10)
    return (pd.DataFrame({"kept": kept, "authored": 10 - kept}, index=[f"P{100 + i}" for i in range(10)]), 10)


def _accuracy(seed):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"top-1 accuracy": rng.uniform(0.05, 0.9, 10)}, index=[f"P{100 + i}" for i in range(10)])
    return pd.concat([frame, pd.DataFrame({"top-1 accuracy": [frame["top-1 accuracy"].mean()]}, index=["all"])]), "m"


def _example(seed):
    rng = np.random.default_rng(seed)
    n = 40
    return (rng.integers(0, 30, n), rng.integers(0, 1536, n), rng.uniform(0, 1, n), 1.0), dict(
        n_layers=30, n_neurons=1536, prompt="The capital of France is", answer="Paris")


def _completeness(seed):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.01, 0.2, 30)
    return (pd.DataFrame({"p_full_minus_p_zero": p, "sum_of_scores": p + rng.normal(0, 0.01, 30)},
                         index=pd.RangeIndex(30, name="layer")),)


def _layer_errors(seed):
    rng = np.random.default_rng(seed)
    columns = ["right, m = 1", "right, m = 20", "left, m = 20", "gauss_legendre, m = 20", "right, m = 100"]
    return (pd.DataFrame({c: 10 ** rng.uniform(-4, -1, 30) for c in columns}, index=pd.RangeIndex(30, name="layer")),)


def _integrand(seed):
    alphas = np.linspace(0, 1, 801)
    width = 0.01 + 0.02 * seed
    return (alphas, np.exp(-((alphas - 0.03 - 0.1 * seed) / width) ** 2) + 0.05), dict(layer=seed, neuron=7, prompt="x")


# (figure function, its inputs for data set a, for data set b)
CASES = {
    "template_bars": (figures.template_bars, _templates),
    "accuracy_bars": (figures.accuracy_bars, _accuracy),
    "coarse_layers": (figures.coarse_layers, lambda s: (np.random.default_rng(s).integers(0, 50, 30), 0.2)),
    "example_scores": (lambda args, kw: figures.example_scores(*args, **kw), _example),
    "completeness": (figures.completeness, _completeness),
    "coarse_sizes": (figures.coarse_sizes, lambda s: (np.random.default_rng(s).lognormal(3, 0.5, 200), 0.2, 46080)),
    "layer_errors": (figures.layer_errors, _layer_errors),
    "spiky_integrand": (lambda args, kw: figures.spiky_integrand(*args, **kw), _integrand),
    "overlap_distributions": (figures.overlap_distributions,
                              lambda s: (np.random.default_rng(s).beta(2, 6, 300), np.random.default_rng(s + 1).beta(2, 5, 60))),
    "threshold_overlap": (figures.threshold_overlap, lambda s: (_sweep_t(s),)),
    "layer_shares": (figures.layer_shares,
                     lambda s: (np.random.default_rng(s).integers(0, 100, 30), np.random.default_rng(s + 1).integers(0, 9, 30))),
    "validation_sweep": (figures.validation_sweep, lambda s: (_sweep_p(s), 2.0, 2.0)),
    "land_training": (figures.land_training, lambda s: (_losses(s, falls=s % 2 == 0),)),
    "learning_curve": (figures.learning_curve, lambda s: (_curve(s),)),
    "method_rates": (lambda t: figures.method_rates(t, quantity="success rate", paper_values=_paper10(), percent=True),
                     lambda s: (_rates(s),)),
    "method_rates, lowering": (lambda t: figures.method_rates(t, quantity="mean change rate", direction="down",
                                                              paper_values=figures.dai_paper_values("suppress")),
                               lambda s: (_rates(s, scale=-1.0),)),
    "relation_bars": (lambda f: figures.relation_bars(f, factors={"suppress": 0, "amplify": 2},
                                                      reference=paper.DAI_SUPPRESS_AMPLIFY), lambda s: (_relations(s),)),
    "claims_forest": (lambda f: figures.claims_forest(f, "Overlap (chapter 3)"), lambda s: (_forest(s),)),
    "claims_forest, a declared family": (lambda f: figures.claims_forest(f, "Chapter 6: edit success"),
                                         lambda s: (_primary_forest(s),)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_figures_leave_no_tick_labels_on_top_of_each_other(name):
    draw, inputs = CASES[name]
    for seed in (0, 1):
        fig, caption = draw(*inputs(seed))
        assert figures.tick_label_overlaps(fig) == [], name
        assert caption and "nan" not in caption, caption
        plt.close(fig)


@pytest.mark.parametrize("name", sorted(CASES))
def test_captions_are_computed_from_the_data(name):
    """The same figure function on two data sets gives two captions: no caption is a fixed string."""
    draw, inputs = CASES[name]
    (fig_a, a), (fig_b, b) = draw(*inputs(0)), draw(*inputs(1))
    plt.close(fig_a), plt.close(fig_b)
    assert a != b, f"{name}: the same caption for different data: {a!r}"


def test_log_axes_of_a_narrow_range_stay_legible():
    """A grid within one decade (where matplotlib labels minor ticks, '3x10^-1 4x10^-1 6x10^-1') and a dense one."""
    for grid in ((0.3, 0.4, 0.5, 0.6, 0.8), (1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 1.8, 1.9, 2.0)):
        fig, _ = figures.validation_sweep(_sweep_p(3, grid), grid[1], 0.0)
        assert figures.tick_label_overlaps(fig) == []
        plt.close(fig)


def test_the_overlap_check_fails_on_the_old_sweep_figure():
    """The check itself: chapter 4's old figure (matplotlib's default log axis over P = 0.25 ... 5) printed minor
    labels on top of each other, and the check says so."""
    sweep = _sweep_p(0)
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot(sweep.index, 100 * sweep["within"], "o-")
    ax.set(xscale="log", title="LAND sets on validation facts")
    problems = figures.tick_label_overlaps(fig)
    plt.close(fig)
    assert problems and all("overlap" in p for p in problems), problems


def test_the_training_figure_says_whether_the_loss_fell_and_beat_the_trivial_answers():
    fell = figures.land_training(_losses(0, falls=True))[1]
    flat = figures.land_training(_losses(0, falls=False))[1]
    assert "fell by" in fell and "did not fall" in flat or "rose by" in flat
    assert "all-zero output" in fell and "relation's mean target" in fell


def test_bars_draw_their_intervals_and_the_papers_values():
    table = _rates(0)
    fig, _ = figures.method_rates(table, quantity="success rate", paper_values=_paper10(), percent=True)
    ax = fig.axes[0]
    # one error bar per method and the papers' markers on the four methods they report, per model
    assert len(ax.containers) >= 1 and ax.containers[-1].errorbar is not None or ax.collections
    markers = [line for line in ax.get_lines() if line.get_label().startswith("LAND, ")]
    assert {line.get_label() for line in markers} == {"LAND, GPT-2", "LAND, Llama-3.2-1B"}
    assert all(len(line.get_xdata()) == 4 for line in markers)
    plt.close(fig)


def test_forest_data_holds_each_claim_with_its_interval_verdict_and_the_papers_value():
    """kn.book.results.forest_data: one row per (claim with an interval, run), the verdict in one word, the paper's value
    of the same quantity; a claim against a paper's figure whose interval covers it is "not distinguishable", never
    "differs"."""
    from types import SimpleNamespace

    from kn.book.summaries import Claim
    from kn.book.verdicts import forest_data, forest_families

    def run(name, r_lo, beats):
        overlap = SimpleNamespace(claims=[
            Claim("paraphrases overlap little", "", Interval(0.2, 0.15, 0.25, 9), True),
            Claim("refining reaches its size range", "", None, True)])  # no interval: not drawn
        land = SimpleNamespace(claims=[Claim("LAND's overlap", "", r_lo, None),
                                       Claim("LAND beats the relation prior", "", Interval(0.1, 0.05, 0.2, 9) if beats
                                             else Interval(0.1, -0.05, 0.2, 9), beats)])
        editing = SimpleNamespace(claims=[Claim("Related: LAND vs KN-refined", "", Interval(0.02, -0.1, 0.1, 9), None)])
        return SimpleNamespace(name=name, short=name, choices=None, overlap=overlap, land=land, amplification=None,
                               editing=editing)

    frame = forest_data([run("a", Interval(0.95, 0.90, 0.99, 9), True), run("b", Interval(0.5, 0.4, 0.6, 9), None)])
    assert len(frame) == 2 * 4
    lands = frame[frame["claim"] == "LAND's overlap"].set_index("run")
    assert lands.loc["a", "verdict"] == "not distinguishable"  # covers LAND's 96.58%, though it excludes zero
    assert lands.loc["a", "paper"] == {"LAND, GPT-2": 0.9658, "LAND, Llama-3.2-1B": 0.9766}
    edit = frame[frame["claim"] == "Related: LAND vs KN-refined"].iloc[0]
    assert edit["paper"]["LAND, GPT-2"] == pytest.approx(0.2157 - 0.1745) and edit["percent"]
    assert set(frame[frame["claim"] == "LAND beats the relation prior"]["verdict"]) == {"holds", "not distinguishable"}
    assert [title for title, _ in forest_families([run("a", Interval(0.95, 0.9, 0.99, 9), True)])] == [
        "Overlap of paraphrases (chapter 3)", "LAND on trial (chapter 4)", "Editing (chapter 6)"]


def test_wide_tables_are_split_and_read_in_words(monkeypatch):
    """kn.book.report.show_table: code names become words (with the paper's symbol), number columns are right-aligned
    and unbroken, and a table too wide for the text column comes as several, each with the row labels."""
    import IPython.display
    from kn.book import report

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    i = Interval(0.301, 0.196, 0.405, 10)
    columns = ["size", "within", "fact_specific", "across_same_relation", "across_other_relation"]
    frame = pd.DataFrame({c: [i, i] for c in columns}, index=pd.MultiIndex.from_tuples(
        [("ours, smollm2-135m (smoke), known facts", "Coarse set (the prompt's own)"),
         ("ours, smollm2-135m (smoke), known facts", "LAND")], names=["run", "detector"]))
    report.show_table(frame, "{:.1%}", caption="Every detector on the test facts")
    html = [d.data for d in shown]
    assert len(html) >= 2 and all("Every detector on the test facts (columns" in h for h in html)
    assert all(h.count("ours, smollm2-135m (smoke), known facts") >= 1 for h in html)  # row labels in each part
    joined = "".join(html)
    assert "fact-specific (within minus same relation)" in joined and "fact_specific" not in joined.replace(
        "col_heading", "")
    assert 'class="data row0 col0 kn-num"' in joined or "kn-num" in joined
    shown.clear()
    report.show_table(pd.DataFrame({"L": [12], "H": [3072], "R": [64], "parameters": [4718592]}, index=["GPT-2"]),
                      "{:,.0f}")
    assert len(shown) == 1 and "layers, L" in shown[0].data and "parameters, L × 2 × H × R" in shown[0].data


def test_the_learning_curve_draws_the_spread_over_seeds_where_it_has_one():
    curve = _curve(0)
    curve["within_sd"], curve["fact_specific_sd"] = 0.05, 0.02
    fig, caption = figures.learning_curve(curve)
    assert any(len(c.lines) > 1 and c.has_yerr for c in fig.axes[0].containers)
    assert figures.tick_label_overlaps(fig) == [] and "standard deviation" in caption
    plt.close(fig)


def test_the_learning_curve_says_when_a_setting_leaves_every_set_empty():
    curve = _curve(0)
    curve.loc[curve["setting"] == "paper's optimiser", ["within", "fact_specific", "across_same_relation"]] = np.nan
    fig, caption = figures.learning_curve(curve)
    plt.close(fig)
    assert "nan" not in caption and "empty at every size" in caption


def test_a_lowering_action_names_the_lowest_method_and_counts_those_below_their_control():
    fig, caption = figures.method_rates(_rates(2, scale=-1.0), quantity="mean change rate", direction="down")
    plt.close(fig)
    assert "is lowest" in caption and "below their random control" in caption and "highest" not in caption.split(
        "Unrelated")[0]


def test_a_declared_familys_contrast_not_significant_after_holm_is_not_distinguishable():
    """A primary contrast (Claim.family) whose interval misses zero but whose Holm-corrected p does not reach 0.05
    (holds None) reads "not distinguishable", and its family forms its own forest, on one unit."""
    from types import SimpleNamespace

    from kn.book.summaries import Claim
    from kn.book.verdicts import forest_families

    family = "chapter 6: edit success"
    editing = SimpleNamespace(claims=[
        Claim("Same: LAND vs KN-refined", "", Interval(0.1, 0.02, 0.2, 9), None, family, 0.03, 0.09),
        Claim("Same: LAND vs Random (LAND)", "", Interval(0.3, 0.2, 0.4, 9), True, family, 0.001, 0.004),
        Claim("erasing is specific", "", Interval(0.1, -0.1, 0.3, 2), None)])
    run = SimpleNamespace(name="smoke", short="smoke (smollm2-135m)", choices=None, overlap=None, land=None,
                          amplification=None, editing=editing)
    (primary_title, primary), (other_title, other) = forest_families([run])
    assert primary_title.startswith("Chapter 6: edit success") and "Editing (chapter 6)" in other_title
    assert list(primary["verdict"]) == ["not distinguishable", "favours A"] and primary["unit"].nunique() == 1
    assert primary.loc[0, "paper"]["LAND, GPT-2"] == pytest.approx(0.2581 - 0.2049)  # LAND minus KN-refined, Table 10
    fig, caption = figures.claims_forest(primary, primary_title)
    plt.close(fig)
    assert "Holm" in caption and "1 interval that misses zero" in caption


def _tiny_land(epochs: int, lr: float):
    """A tiny LAND study (2 relations x 4 facts x 4 templates, L=2, H=16): what land_losses reads."""
    from types import SimpleNamespace

    from kn.methods import counterexamples
    from kn.methods import land

    rng = np.random.default_rng(0)
    rows, coarse = [], {}
    for r in ("P1", "P2"):
        for f in range(4):
            core = set(rng.choice(32, 4, replace=False).tolist())
            for t in range(4):
                pid = f"{r}-{f}-{t}"
                rows.append({"prompt_id": pid, "fact_id": f"{r}-{f}", "relation": r, "subject": f"s{r}{f}",
                             "object": f"o{r}{f}", "template_position": t, "split": "test" if f == 3 else "train"})
                coarse[pid] = frozenset(core | set(rng.choice(32, 3, replace=False).tolist()))
    prompts = pd.DataFrame(rows)
    hp = land.LandHyperParams(rank=4, epochs=epochs, batch_size=4, lr=lr, counterexamples=1, seed=0)
    pairs, targets, _ = counterexamples.training_data(prompts, coarse, hp)
    detector, losses = land.train_land(pairs, targets, 2, 16, hp)
    return SimpleNamespace(hp=hp, detector=detector, losses=losses), prompts, coarse, pairs, targets


def test_land_losses_measure_the_detector_against_the_answers_that_ignore_the_prompt():
    study, prompts, coarse, pairs, targets = _tiny_land(epochs=30, lr=0.05)
    losses = figures.land_losses(study, prompts, coarse)
    assert list(losses.epochs.index) == list(range(1, 31)) and losses.epochs["validation"].isna().all()
    # the all-zero output's loss is the mean squared target per element, over the train pairs
    zero = np.mean([np.square(targets[key][1]).sum() for _, key in pairs]) / 32
    assert losses.trivial.loc["all-zero output", "train"] == pytest.approx(zero)
    # fitted on the train prompts, the relation's mean beats the overall mean, which beats zeros, there
    train = losses.trivial["train"]
    assert train.iloc[2] <= train.iloc[1] <= train.iloc[0]
    assert losses.after["train"] < train.iloc[0] and np.isfinite(losses.after["test"])
    fig, caption = figures.land_training(losses)
    plt.close(fig)
    assert "fell by" in caption and "held-out test facts" in caption


def test_the_training_figure_draws_the_validation_facts_loss_per_epoch():
    """With the fit run's history (kn.experiments.land_operating.LandStudy.history) the figure draws the validation
    facts' loss per epoch and its caption says whether it fell, from the numbers."""
    study, prompts, coarse, pairs, targets = _tiny_land(epochs=4, lr=0.05)
    study.history = pd.DataFrame({"train": [0.5, 0.4, 0.3, 0.2], "validation": [0.6, 0.5, 0.45, 0.44]},
                                 index=pd.RangeIndex(1, 5, name="epoch"))
    losses = figures.land_losses(study, prompts, coarse)
    assert losses.epochs["validation"].tolist() == [0.6, 0.5, 0.45, 0.44]
    fig, caption = figures.land_training(losses)
    assert any("validation facts" in line.get_label() for line in fig.axes[0].get_lines())
    plt.close(fig)
    assert "On the validation facts" in caption and "fell from 0.6 to 0.44" in caption
    study.history = study.history.assign(validation=[0.6, 0.6, 0.6, 0.6])
    assert "did not move from 0.6 to 0.6" in figures.land_training(figures.land_losses(study, prompts, coarse))[1]
    plt.close("all")


def test_headers_read_in_words_and_preformatted_numbers_stay_numbers():
    from kn.book.report import _header, _is_number

    assert _header("N_L_paper_ratio") == "LAND set, N_L, paper ratio"
    assert _header("within_sd") == "within fact, sd over seeds" and _header("gain_lo") == "gain, low"
    assert _header("top-1 accuracy") == "top-1 accuracy"  # words already
    assert all(_is_number(v) for v in ("-0.33 [-1.40, +0.45]", "41.1% [38.7%, 43.5%]", "1,536", "–", 12, Interval(
        1, 0, 2, 3), float("nan"), None))
    assert not any(_is_number(v) for v in ("3.11.7", "as locked", True, "P176"))


def test_the_navigation_holds_one_part_per_run_titled_with_its_name(tmp_path):
    """kn.book.runner: two runs of one model are two parts of the book's navigation, each captioned with the run's name;
    each page's title names the model and the run, and the navigation lists it under its part without them."""
    import nbformat
    from kn.book import build as runner

    runner.prepare_book_root(tmp_path)
    for run in ("gpt2-paper", "gpt2-gpu"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell(runner._run_heading("# 4. LAND\n\nText.", "gpt2", run))]
        (tmp_path / "book" / "runs" / run).mkdir(parents=True)
        nbformat.write(nb, tmp_path / "book" / "runs" / run / "04_land.ipynb")
        assert nb.cells[0].source.startswith(f"# 4. LAND (gpt2), run {run}\n")
    import yaml

    toc = yaml.safe_load(runner._book_toc(tmp_path).read_text())
    parts = {p["caption"]: p["chapters"] for p in toc["parts"]}
    assert "The study" in parts and "Runs" not in parts
    assert parts["Run gpt2-gpu"] == [{"file": "book/runs/gpt2-gpu/04_land", "title": "4. LAND"}]
    assert parts["Run gpt2-paper"] == [{"file": "book/runs/gpt2-paper/04_land", "title": "4. LAND"}]


def test_a_long_claim_name_does_not_widen_the_forest():
    frame = _forest(0)
    frame.loc[frame["claim"] == "N_uo is not N_s", "claim"] = ("LAND's overlap, at read-out (a) the paper's size, "
                                                               "N_L = ratio x N_s, on 4 test facts and 80 training "
                                                               "prompts (the paper: about 250,000)")
    fig, _ = figures.claims_forest(frame, "LAND on trial (chapter 4)")
    fig.canvas.draw()
    width = fig.get_tightbbox(fig.canvas.get_renderer()).width  # inches, what savefig(bbox_inches="tight") keeps
    plt.close(fig)
    assert width < 9.5


def _fixed_captions(notebook_text: str) -> list[str]:
    """report.figure(fig, "<a literal>") calls in a notebook: captions written before the data were seen."""
    import ast
    import json

    out = []
    for cell in json.loads(notebook_text)["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        for node in ast.walk(ast.parse(source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "figure"
                    and len(node.args) >= 2 and isinstance(node.args[1], (ast.Constant, ast.JoinedStr))):
                out.append(ast.get_source_segment(source, node.args[1])[:60])
    return out


def test_no_chapter_captions_a_figure_with_a_fixed_string():
    """Every figure of every chapter gets its caption from a kn.book.figures function (computed from the data); the
    check finds the fixed captions chapter 1 had before."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    assert {p.name: _fixed_captions(p.read_text()) for p in sorted((root / "notebooks").glob("*.ipynb"))
            if _fixed_captions(p.read_text())} == {}
    old = ('{"cells": [{"cell_type": "code", "source": ["report.figure(fig, \\"Bars above the dashed line are '
           'relations the model answers better than average.\\")"]}]}')
    assert _fixed_captions(old) == ['"Bars above the dashed line are relations the model answers ']

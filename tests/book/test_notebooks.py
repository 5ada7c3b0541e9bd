"""Execute every chapter with papermill on the smoke params over a slice of PARAREL that holds cross-relation duplicates
(P176/P178), check the values the chapters record, run one chapter as a reader would in Jupyter, build the book, and
open every page in headless Chromium to check what a reader sees."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from kn.base.rundir import RunFolder
from kn.book import build, cli, reference, runner
from kn.book.summaries import (
    AmplificationSummary,
    AttributionSummary,
    ChoicesSummary,
    DataSummary,
    EditingSummary,
    LandSummary,
    OverlapSummary,
)
from smoke_slice import make_smoke_run

ROOT = Path(__file__).resolve().parents[2]
# the smoke slice's reference run (scripts/smoke_reference.py, `make reference-smoke`): what a correct installation
# computes on the slice, number by number
SMOKE_REFERENCE = ROOT / "tests" / "reference" / "smoke"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_dir):
    """The smoke run, started with an empty model cache (KN_CACHE_DIR in a temporary folder), so that chapter 1 meets
    the first load's GGUF conversion as a new user does and the page check sees a cold start."""
    cold_cache = tmp_path_factory.mktemp("cold-cache")
    saved = os.environ.get("KN_CACHE_DIR")
    os.environ["KN_CACHE_DIR"] = str(cold_cache)
    try:
        yield _smoke_run(tmp_path_factory)
    finally:
        if saved is None:
            os.environ.pop("KN_CACHE_DIR", None)
        else:
            os.environ["KN_CACHE_DIR"] = saved


def _smoke_run(tmp_path_factory):
    root, run_dir, params, timings = make_smoke_run(tmp_path_factory.mktemp("book"), Path(os.environ["KN_DATA_DIR"]))
    return root, RunFolder(run_dir), timings, params


def test_chapter_1_keeps_cross_relation_duplicates_on_one_side(smoke_run):
    _, run, timings, _ = smoke_run
    data = DataSummary.read(run)
    assert data.counts["relations"] == 2 and data.population == "known"
    prompts = run.read_table("prompts")
    assert prompts["prompt_id"].is_unique
    assert sorted(prompts["relation"].unique()) == ["P176", "P178"]
    # the slice holds pairs of P176 and P178 with the same subject, object and wording: the run has some, one side each
    assert data.shared_prompt_rows > 0 and data.shared_prompts_split_mismatch == 0
    twins = prompts[prompts.duplicated(["prompt", "answer"], keep=False)]
    assert (twins.groupby(["prompt", "answer"])["split"].nunique() == 1).all()
    assert len(prompts) == data.sample_prompts == 10 * (data.sample_facts_train + data.sample_facts_test)
    assert 0.0 < data.top1_accuracy.mean < 1.0
    assert "01_data_adaptation" in timings


def test_library_output_of_a_cold_start_is_logged_not_shown(smoke_run):
    """The first load converts the GGUF file with a progress bar on stderr: it goes to the run folder's log, and
    chapter 1's page says so in one line; every chapter records the versions it ran with."""
    root, run, _, _ = smoke_run
    log = run.path / "logs" / "01_data_adaptation.log"
    assert log.is_file() and "GGUF" in log.read_text()
    page = json.dumps(nbformat.read(root / "book" / "runs" / "smoke" / "01_data_adaptation.ipynb", as_version=4))
    assert "Kept off this page:" in page and "GGUF" not in page
    environment = run.read_json("environment")
    assert set(environment) == set(runner.CHAPTERS)
    assert all(env["packages"]["transformers"] for env in environment.values())


def test_attribution_and_choices_record_their_values(smoke_run):
    _, run, _, _ = smoke_run
    attribution = AttributionSummary.read(run)
    prompts = run.read_table("prompts")
    # rows that repeat a text are scored once
    assert attribution.stored == prompts.drop_duplicates(["prompt", "target_id"]).shape[0] < len(prompts)
    assert attribution.completeness_mean_abs_gap < 0.25 * attribution.completeness_mean_delta
    choices = ChoicesSummary.read(run)
    assert choices.prompts == 2
    rows = {(r["rule"], r["steps"]): r for r in choices.convergence}
    assert rows[("reference", 0)]["jaccard_reference_mean"] == 1.0
    assert 0 <= rows[("right", 20)]["jaccard_reference_mean"] <= 1
    assert set(choices.definition_drop) == {"ffn_out_input", "pre_activation", "random"}


def test_table4_on_test_facts_equals_table7_before_columns(smoke_run):
    _, run, _, _ = smoke_run
    overlap, land = OverlapSummary.read(run), LandSummary.read(run)
    for key in ("N_s", "N_so", "R_so"):
        assert overlap.table4_test[key] == land.table7[key]
    assert overlap.table4_test["N_uo"].mean < overlap.table4_test["N_s"].mean  # not N_s by construction
    assert set(overlap.p_used) == {"P176", "P178"} and all(p < 1.0 for p in overlap.p_used.values())


def test_land_chooses_p_on_validation_facts_and_faces_the_baselines(smoke_run):
    _, run, _, _ = smoke_run
    land = LandSummary.read(run)
    # the main read-out is the paper's operating point read per prompt (no P), and it holds where it is reported: the
    # realised N_L / N_s on the smoke slice's held-out test facts is within 10% of the target
    assert land.operating_rule == "paper_ratio" and land.threshold is None and "nothing chosen" in land.threshold_reason
    assert land.table7["N_L"].mean / land.table7["N_s"].mean == pytest.approx(1.24, rel=0.10)
    assert land.seed_points and land.seed_holds and land.consistency  # over land_seeds; the consistency split's contrasts
    assert land.n_parameters == 30 * 2 * 1536 * 64
    assert {"coarse", "land", "relation_prior", "nearest_neighbour", "constant", "oracle"} <= set(land.detectors)
    assert land.detectors["constant"]["fact_specific"].mean == 0.0  # one set for every fact
    assert {row["setting"] for row in land.learning_curve} == {"paper's optimiser", "this run's"}
    assert {"new facts / LAND", "new wordings / LAND"} <= set(land.wordings)
    recorded = run.read_json("params")
    assert recorded["chapters"]["04_land"]["land_threshold"] is None  # chosen, not given


def test_interventions_have_a_random_control_per_method_and_intervals(smoke_run):
    _, run, _, _ = smoke_run
    amplification, editing = AmplificationSummary.read(run), EditingSummary.read(run)
    for method in ("Baseline", "KN-refined", "LAND", "Relation prior", "Nearest neighbour", "Constant"):
        assert f"Random ({method})" in amplification.amplify
        assert amplification.set_sizes[f"Random ({method})"] == amplification.set_sizes[method]
    for claim in amplification.claims[:-1] + editing.claims[:-2]:
        assert re.search(r"\[[-+]?\d", claim.sentence), claim.sentence  # every comparison quotes its interval
    primary = [c for c in amplification.claims + editing.claims if c.family]
    assert len(primary) == 2 * 15 and all(c.p_holm is not None and c.p_holm >= c.p_value for c in primary)
    for claim in (c for c in editing.claims if c.family):  # McNemar's counts beside a method-vs-control contrast;
        net = "net of its random control" in claim.name  # a net contrast names the sizes it compares
        assert ("each against a random control of its own size" in claim.sentence) if net else \
            ("discordant" in claim.sentence), claim.sentence
    assert sum("net of its random control" in c.name for c in primary) == 2 * 2 * 3  # 2 pairs x 3 conditions x 2
    assert all(r.n > 0 and r.hi > 0 for by_condition in editing.rates.values() for r in by_condition.values())
    assert all(0 <= i.mean <= 1 for by_condition in editing.success.values() for i in by_condition.values())
    assert editing.changed_same["LAND"].n == editing.facts
    assert {row["erased"] for row in editing.erasing} == {"refined neurons", "random neurons (matched)"}


def test_executed_notebooks_have_no_errors(smoke_run):
    root, _, _, _ = smoke_run
    executed = sorted((root / "book" / "runs" / "smoke").glob("*.ipynb"))
    assert [p.stem for p in executed] == sorted(runner.CHAPTERS)
    for path in executed:
        shown = []
        for cell in json.loads(path.read_text())["cells"]:
            for output in cell.get("outputs", []):
                assert output["output_type"] != "error", f"{path.name}: {output.get('ename')}"
                shown.append("".join(output.get("data", {}).get("text/markdown", "")))
        # every chapter states the run's size against the papers' (issue 23)
        assert any(s.startswith("Scale: this run has ") and "277,170 prompts" in s for s in shown), path.name


def test_a_chapter_run_by_hand_takes_an_edited_value(smoke_run, tmp_path):
    """As in Jupyter: the notebook as it is, pointed at the run by its params_file default, with one value changed in
    its parameters cell, re-computes the chapter with that value (no papermill, no injected cell). On a copy of the
    run folder: the smoke run's later chapters must stay computed from its own chapter 4 for the other tests."""
    from nbclient import NotebookClient

    _, smoke, _, smoke_params = smoke_run
    run = RunFolder(tmp_path / "runs" / "smoke")
    shutil.copytree(smoke.path, run.path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("shards", "merged"))
    params = tmp_path / "smoke.yaml"
    params.write_text(yaml.safe_dump({**yaml.safe_load(smoke_params.read_text()), "run_dir": str(run.path)}))
    nb = nbformat.read(ROOT / "notebooks" / "04_land.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert 'params_file = ""' in cell.source and "land_threshold = None" in cell.source
    cell.source = cell.source.replace('params_file = ""', f'params_file = "{params}"').replace(
        "land_threshold = None", "land_threshold = 2.0")
    NotebookClient(nb, timeout=1200, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
                   ).execute()
    land = LandSummary.read(run)
    assert land.threshold == 2.0 and land.threshold_reason == "fixed by the parameter land_threshold"
    assert run.read_json("params")["origin"]["04_land"]["land_threshold"] == "notebook cell"
    # one parameter changed: the run no longer reproduces the smoke slice's reference, and kn verify names the numbers
    changed = reference.verify(run.path, SMOKE_REFERENCE)
    assert not changed.ok and changed.differ
    assert any(name.startswith("land_summary.json:") for name, *_ in changed.differ)
    assert not any(name.startswith(("data_summary.json:", "attribution_summary.json:")) for name, *_ in changed.differ)
    assert cli.main(["verify", str(run.path), "--reference", str(SMOKE_REFERENCE)]) == 1


def test_the_smoke_run_reproduces_the_smoke_slices_reference_run(smoke_run, capsys):
    """kn verify, number by number and exact, against tests/reference/smoke. A change that alters any chapter's numbers
    on the slice fails here: re-run `make reference-smoke` and commit its result (a reviewed regression file). Exact
    equality is promised under the reference's torch, transformers and CPU instruction set; elsewhere a difference is
    an expected failure that names them."""
    _, run, _, _ = smoke_run
    result = reference.verify(run.path, SMOKE_REFERENCE)
    if not result.ok and result.environment_differs:
        # elsewhere the numbers move at rounding level (measured: 759 of 3,363 between AVX-512 and AVX2), the verdicts
        # must not: that much is checked on any machine before the exact comparison is excused
        assert not result.missing and result.verdicts_compared > 50 and result.verdicts_differ == [], result.lines()
        pytest.xfail("exact only under the reference's environment: " + "; ".join(result.environment_differs))
    assert result.ok, "\n".join(["refresh with `make reference-smoke` if the change is meant", *result.lines()])
    assert result.equal == len(reference.numbers(SMOKE_REFERENCE / "record")) > 300 and result.close == 0
    assert cli.main(["verify", str(run.path), "--reference", str(SMOKE_REFERENCE)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"reproduces the reference: {result.equal} numbers equal"


def test_example_facts_run_end_to_end_with_a_tiny_model(tmp_path):
    """The project's own example facts (data/example) through every chapter, with a tiny random Llama model."""
    root = build.prepare_book_root(tmp_path)
    values = yaml.safe_load((ROOT / "params" / "example.yaml").read_text())
    values.update(model="tiny-llama", run_dir=str(root / "runs" / "example"))
    params = root / "example.yaml"
    params.write_text(yaml.safe_dump(values))
    runner.execute_chapters(params, book_root=root, progress=False)
    run = RunFolder(values["run_dir"])
    data = DataSummary.read(run)
    assert data.counts["source"] == "user" and data.counts["relations"] == 3 and data.counts["facts"] == 36
    assert EditingSummary.read(run).facts >= 3


def test_book_builds_with_warnings_as_errors(smoke_run):
    root, _, _, _ = smoke_run
    index = build.build_book(root)
    page = root / "book" / "_build" / "html" / "book" / "runs" / "smoke" / "01_data_adaptation.html"
    assert index.is_file() and page.is_file()
    html = page.read_text()
    assert "smollm2-135m" in html and "<table" in html and "<img" in html


# --------------------------------------------------------------------------- what a reader sees

_MACHINE_PATH = re.compile(r"(?<![\w.])/(?:home|root|tmp|work|Users|var|opt|usr)/[\w./-]+")
_WARNING = re.compile(r"\b\w*Warning\b|warnings\.warn|DeprecationWarning")
_NAN = re.compile(r"(?<![\w-])nan%?(?![\w-])")
_PROGRESS = re.compile(r"\d+/\d+ \[|it/s\]|\d+%\|")


def page_problems(dom: str) -> list[str]:
    """What a reader should not see on a rendered chapter page (the DOM as Chromium has it), and what must be there."""
    problems = []
    body = dom.split("<article", 1)[-1]  # the page's content, not the theme's navigation and scripts
    text = re.sub(r"<script.*?</script>|<style.*?</style>", "", body, flags=re.S)
    visible = re.sub(r"<[^>]+>", " ", text)
    for stream in re.findall(r'<div class="output stream[^"]*">(.*?)</div>', text, flags=re.S):
        lines = [l for l in re.sub(r"<[^>]+>", "", stream).splitlines() if l.strip()]
        if len(lines) > 5:
            problems.append(f"a stream output of {len(lines)} lines")
    for pattern, what in ((_PROGRESS, "a progress bar"), (_WARNING, "warning text"), (_MACHINE_PATH, "an absolute path"),
                          (_NAN, "a nan")):
        found = pattern.search(visible)
        if found:
            problems.append(f"{what}: {found.group(0)!r}")
    for marker in ("output traceback", "output error", "Traceback (most recent call last)"):
        if marker in text:
            problems.append(f"an error cell ({marker})")
    if "Parameters of this run" not in visible:
        problems.append("no parameters table")
    images = len(re.findall(r"<img ", text))
    captions = len(re.findall(r"<figcaption", text))
    if captions < images:
        problems.append(f"{images - captions} figure(s) without a caption")
    return problems


def test_the_page_check_fails_on_a_progress_bar_and_a_path():
    good = ('<article><table><caption>Parameters of this run</caption></table><figure class="kn-figure"><img src="x"/>'
            "<figcaption>What to look for.</figcaption></figure></article>")
    assert page_problems(good) == []
    bar = good.replace("</article>", '<div class="output stream highlight-myst-ansi">attribution:  35%|###  | '
                                     "212/600 [00:10&lt;00:20, 2.1it/s]</div></article>")
    assert any("progress bar" in p for p in page_problems(bar))
    path = good.replace("</article>", "<p>data from /work/shared/data</p></article>")
    assert any("absolute path" in p for p in page_problems(path))
    assert any("nan" in p for p in page_problems(good.replace("</article>", "<td>nan%</td></article>")))
    assert any("without a caption" in p for p in page_problems(good.replace("<figcaption>What to look for."
                                                                            "</figcaption>", "")))


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail("headless Chromium is needed for the browser test: `apt-get install chromium` (make setup does it as root)")
    return path


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=5000"]
READER_WIDTH = 1300  # px: a laptop's browser window

# Run in the page (a copy of it) once it is laid out: what a reader would see of each table and figure, written into
# the DOM as JSON, for --dump-dom to carry out. Widths are the browser's own (CSS px at READER_WIDTH).
_LAYOUT_SCRIPT = """<script>
window.addEventListener('load', function () { setTimeout(function () {
  var article = document.querySelector('article') || document.body;
  var style = getComputedStyle(article);
  var box = article.getBoundingClientRect();
  var column = {left: box.left + parseFloat(style.paddingLeft), right: box.right - parseFloat(style.paddingRight)};
  var textBox = function (cell) { var r = document.createRange(); r.selectNodeContents(cell); return r; };
  var out = {column: column.right - column.left, tables: [], figures: []};
  article.querySelectorAll('table').forEach(function (table, i) {
    var caption = table.querySelector('caption');
    var heads = Array.prototype.map.call(table.querySelectorAll('thead th'), function (th) { return th.textContent.trim(); });
    var name = (caption && caption.textContent.trim()) || heads.filter(Boolean).slice(0, 3).join(' | ') || 'table ' + i;
    var rect = table.getBoundingClientRect();
    var overflow = [];
    for (var el = table.parentElement; el && el !== article.parentElement; el = el.parentElement) {
      if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible') {
        overflow.push({tag: el.tagName.toLowerCase() + '.' + el.className, scroll: el.scrollWidth, client: el.clientWidth});
      }
    }
    var close = [], broken = [], unaligned = [], columns = {};
    table.querySelectorAll('tr').forEach(function (tr) {
      var cells = Array.prototype.filter.call(tr.children, function (c) { return c.textContent.trim(); });
      for (var k = 1; k < cells.length; k++) {
        var a = textBox(cells[k - 1]).getBoundingClientRect(), b = textBox(cells[k]).getBoundingClientRect();
        if (Math.abs(a.top - b.top) < a.height && b.left - a.right < 6) {
          close.push([cells[k - 1].textContent.trim(), cells[k].textContent.trim(), Math.round(b.left - a.right)]);
        }
      }
      Array.prototype.forEach.call(tr.children, function (td, k) {
        if (td.tagName !== 'TD') { return; }
        var text = td.textContent.trim();
        var column = columns[k] = columns[k] || {numbers: 0, other: 0, unaligned: []};
        if (/^[-+\u2212]?(\\d{1,3}(,\\d{3})+|\\d+)(\\.\\d+)?(e[-+]?\\d+)?%?( \\[[^\\]]+\\])?$/.test(text)) {
          var align = getComputedStyle(td).textAlign;
          column.numbers += 1;
          if (align !== 'right' && align !== 'end') { column.unaligned.push(text); }
          if (text.indexOf('[') >= 0 && textBox(td).getClientRects().length > 1) { broken.push(text); }
        } else if (text && text !== '\u2013') {
          column.other += 1;
        }
      });
    });
    // a column of numbers (missing values aside) is right-aligned; a column that mixes words and numbers is text
    Object.keys(columns).forEach(function (k) {
      if (!columns[k].other) { unaligned = unaligned.concat(columns[k].unaligned); }
    });
    var codes = heads.filter(function (h) { return /[a-z]{2,}_[a-z]{2,}/.test(h); });
    out.tables.push({name: name.slice(0, 90), left: rect.left - column.left, right: rect.right - column.left,
                     width: rect.width, overflow: overflow, close: close.slice(0, 3), broken: broken.slice(0, 3),
                     unaligned: unaligned.slice(0, 3), codes: codes});
  });
  article.querySelectorAll('img').forEach(function (img) {
    var figure = img.closest('figure');
    var caption = figure && figure.querySelector('figcaption');
    out.figures.push({caption: caption ? caption.textContent.trim() : '', width: img.getBoundingClientRect().width});
  });
  document.body.setAttribute('data-kn-layout', JSON.stringify(out));
}, 0); });
</script>"""


def _render(page: Path, profile: Path, screenshot: Path | None = None) -> str:
    """The DOM after Chromium ran the page's scripts, at a reader's window width; optionally a full-page screenshot.
    The page is rendered from a copy (next to it, so its relative links hold) with _LAYOUT_SCRIPT added, whose
    measurements come back in the body's data-kn-layout attribute (see layout_problems)."""
    measured = page.with_name(f".{page.stem}.measured.html")
    measured.write_text(page.read_text().replace("</body>", _LAYOUT_SCRIPT + "</body>", 1))
    base = [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    try:
        if screenshot is not None:
            subprocess.run(base + [f"--window-size={READER_WIDTH},6000", f"--screenshot={screenshot}", page.as_uri()],
                           check=True, capture_output=True, timeout=120)
        dom = subprocess.run(base + [f"--window-size={READER_WIDTH},2000", "--dump-dom", measured.as_uri()],
                             check=True, capture_output=True, text=True, timeout=120)
    finally:
        measured.unlink(missing_ok=True)
    return dom.stdout


def layout(dom: str) -> dict:
    """The measurements _LAYOUT_SCRIPT wrote into the DOM."""
    import html

    found = re.search(r'data-kn-layout="([^"]*)"', dom)
    if not found:
        raise AssertionError("the page's layout was not measured (the script did not run)")
    return json.loads(html.unescape(found.group(1)))


def layout_problems(dom: str) -> list[str]:
    """What a reader sees wrong at READER_WIDTH: a table wider than the text column (or scrolling inside it), cells
    whose texts touch, numbers not right-aligned or an interval broken over two lines, headers in code names, and a
    figure without a caption."""
    measured = layout(dom)
    column = measured["column"]
    problems = []
    for t in measured["tables"]:
        if t["right"] > column + 1 or t["left"] < -1:
            problems.append(f"table '{t['name']}' is {t['width']:.0f} px wide and ends at {t['right']:.0f} px in a "
                            f"{column:.0f} px column")
        for o in t["overflow"]:
            problems.append(f"table '{t['name']}' overflows its container {o['tag']} ({o['scroll']} px of content in "
                            f"{o['client']} px)")
        for a, b, gap in t["close"]:
            problems.append(f"table '{t['name']}': cells {a!r} and {b!r} run together ({gap} px apart)")
        for text in t["unaligned"]:
            problems.append(f"table '{t['name']}': the number {text!r} is not right-aligned")
        for text in t["broken"]:
            problems.append(f"table '{t['name']}': the interval {text!r} is broken over two lines")
        for header in t["codes"]:
            problems.append(f"table '{t['name']}': header {header!r} is a code name, not words")
    for k, f in enumerate(measured["figures"]):
        if not f["caption"]:
            problems.append(f"figure {k + 1} has no caption")
    return problems


def test_the_layout_check_fails_on_a_wide_table_run_together_cells_and_a_bare_figure(tmp_path):
    """The browser check itself, on a small page: a table of code-named columns wider than the column, numbers with
    no space between them, and an image without a caption are each reported; the book's own styling passes."""
    wide = "".join(f"<th>across_other_relation_{k}</th>" for k in range(12))
    cells = "".join("<td>30.1% [19.6%, 40.5%]</td>" for _ in range(12))
    bad = (f"<html><body><article><table><thead><tr>{wide}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
           "<table style='border-spacing:0'><tr><td style='padding:0'>30</td><td style='padding:0'>1,536</td></tr>"
           "</table><img src='x.png'/></article></body></html>")
    page = tmp_path / "bad.html"
    page.write_text(bad)
    problems = layout_problems(_render(page, tmp_path / "profile"))
    assert any("px wide" in p for p in problems), problems
    assert any("run together" in p for p in problems), problems
    assert any("code name" in p for p in problems), problems
    assert any("no caption" in p for p in problems), problems


def test_book_pages_read_like_a_study_in_chromium(smoke_run, tmp_path):
    """Every chapter page and the results page, opened in headless Chromium at a reader's width: tables and captioned
    figures, the parameters table, no progress bar, warning, absolute path, nan or error, and every table within the
    text column, legible (layout_problems). Full-page screenshots are kept in artifacts/screenshots."""
    root, _, _, _ = smoke_run
    build.build_book(root)
    html = root / "book" / "_build" / "html"
    shots = ROOT / "artifacts" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = [html / "book" / "runs" / "smoke" / f"{c}.html" for c in runner.CHAPTERS]
    failures = {}
    for page in pages:
        assert page.is_file(), f"{page} was not built"
        dom = _render(page, tmp_path / "profile", shots / f"{page.stem}.png")
        assert "<table" in dom and "<img" in dom, f"{page.name}: no table or no figure"
        # the navigation holds one part per run, captioned with its name, model and scale; the title names both
        assert "Run smoke: smollm2-135m, 2 relations" in dom, f"{page.name}: no part of the navigation for the run"
        assert re.search(r"<h1[^>]*>.*?\(smollm2-135m\), run smoke", dom, re.S), f"{page.name}: the title names no run"
        problems = page_problems(dom) + layout_problems(dom)
        if problems:
            failures[page.name] = problems
        assert (shots / f"{page.stem}.png").stat().st_size > 10_000
    results = html / "book" / "generated" / "results.html"
    dom = _render(results, tmp_path / "profile", shots / "results.png")
    problems = [p for p in page_problems(dom) if p != "no parameters table"] + layout_problems(dom)
    assert "<table" in dom and "<img" in dom, "results.html: no table or no figure"
    if problems:
        failures[results.name] = problems
    assert failures == {}, "\n".join(f"{name}: {p}" for name, found in failures.items() for p in found)


def test_attribution_shards_as_jobs_merge_to_the_chapter_store(smoke_run):
    """The scale-out example: shard jobs (scripts/shards_local.sh, as a SLURM array would run them) and a merge give
    exactly the rows chapter 2 computed in one process."""
    import numpy as np
    from kn.attribution.shards import main
    from kn.attribution.store import AttributionStore

    root, run, _, params = smoke_run
    threads = AttributionStore.open(run.path / "attribution").compute_log()[0]["threads"]  # chapter 2's torch threads
    subprocess.run(["bash", str(ROOT / "scripts" / "shards_local.sh"), str(params), "2", "4"], check=True,
                   capture_output=True, timeout=600, env={**os.environ, "KN_THREADS": str(threads)})
    shard_dirs = sorted((run.path / "shards").iterdir())
    assert len(shard_dirs) == 2 and all(list(d.glob("part-*.parquet")) for d in shard_dirs)
    assert main(["merge", *map(str, shard_dirs), "--into", str(run.path / "merged")]) == 0
    merged = AttributionStore.open(run.path / "merged").read().set_index("key")
    chapter = AttributionStore.open(run.path / "attribution").read().set_index("key")
    assert len(merged) == 4
    for key, row in merged.iterrows():
        for column in ("neuron_ids", "neuron_scores", "layer_sums", "p_full", "p_zero"):
            np.testing.assert_array_equal(row[column], chapter.loc[key, column])
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / "slurm_attribution.sbatch")]).returncode == 0


def test_re_running_chapter_4_marks_chapters_5_and_6_stale_in_kn_and_on_their_pages(smoke_run, tmp_path, capsys):
    """The issue's case: after `kn chapter PARAMS 04 -p land_threshold 2.0`, chapters 5 and 6 still hold what the old
    LAND sets gave. kn names them with the command that refreshes them, their pages (and not chapter 4's) say so at the
    top, and the results page lists them. On a copy of the smoke run: the other tests keep theirs."""
    from kn.base import lineage
    from kn.book import cli

    root, _, _, params = smoke_run
    copy = tmp_path / "book"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("_build", "smoke-data", "shards", "merged"))
    values = {**yaml.safe_load(params.read_text()), "run_dir": str(copy / "runs" / "smoke")}
    copied = copy / "smoke.yaml"
    copied.write_text(yaml.safe_dump(values))
    assert lineage.stale_chapters(copy / "runs" / "smoke") == {}  # every chapter read what the others wrote last
    capsys.readouterr()
    assert cli.main(["chapter", str(copied), "04", "-p", "land_threshold", "2.0", "--book-root", str(copy)]) == 0
    out = capsys.readouterr().out
    for chapter in ("05_amplification", "06_editing"):
        assert f"[stale] {chapter} was computed from an older output of chapter 4 (04_land): " in out, out[-2000:]
    assert f"[stale] refresh: kn chapter {copied} 05 06\n" in out
    html = copy / "book" / "_build" / "html" / "book" / "runs" / "smoke"
    label = "This chapter was computed from an older output of chapter 4 (04_land)"
    for chapter in runner.CHAPTERS:
        assert (label in (html / f"{chapter}.html").read_text()) == (chapter in ("05_amplification", "06_editing"))
    page = nbformat.read(copy / "book" / "runs" / "smoke" / "06_editing.ipynb", as_version=4)
    assert "Re-run: `kn chapter smoke.yaml 05 06`" in page.cells[1].source  # right under the title
    results_page = (copy / "book" / "_build" / "html" / "book" / "generated" / "results.html").read_text()
    assert "stale chapters: 05_amplification was computed from an older output of chapter 4" in results_page

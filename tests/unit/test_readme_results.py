"""The README's Results block is what kn.book.reference.results_markdown makes of reference/ (`make readme-results`
rewrites it): a reference run published or refreshed without it fails here."""

from pathlib import Path

from kn.book import reference

ROOT = Path(__file__).resolve().parents[2]


def test_the_readmes_results_block_is_generated_from_the_reference_runs():
    assert reference.readme_matches(ROOT / "README.md", ROOT / reference.REFERENCE_FOLDER), (
        "README.md's Results block differs from the reference runs: run `make readme-results` and commit README.md")


def test_the_readme_check_fails_on_a_block_that_says_something_else(tmp_path):
    readme = tmp_path / "README.md"
    text = (ROOT / "README.md").read_text()
    start = text.index(reference.README_START) + len(reference.README_START)
    readme.write_text(text[:start] + "\nLAND reproduces: 96.58% overlap.\n" + text[text.index(reference.README_END):])
    assert not reference.readme_matches(readme, ROOT / reference.REFERENCE_FOLDER)

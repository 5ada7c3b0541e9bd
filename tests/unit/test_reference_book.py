"""kn.book.reference_book on hand-made reference runs: the book shows a reference run where no run of its name was made
here, labelled on every page (and marked where its code changed since); a run of the reader's own replaces it whole,
never beside it; a later chapter alone may not add to it."""

import json

import pytest
from kn.base.errors import ParameterError
from kn.base.rundir import REFERENCE_MARKER, RunFolder
from kn.book import reference, reference_book, results
from test_reference import CHAPTERS, make_checkout, make_run, pages


@pytest.fixture()
def book(tmp_path):
    """A fresh book root with reference/smoke published from a miniature checkout, and no run of its own."""
    checkout = make_checkout(tmp_path / "checkout")
    run = make_run(tmp_path / "made" / "runs" / "smoke")
    root = tmp_path / "book-root"
    reference.publish(run, pages(tmp_path / "made" / "book" / "runs" / "smoke"), root / "reference" / "smoke",
                      command="kn reference runs/smoke", params_file="params/smoke.yaml", root=checkout)
    return root, checkout


def _labels(page):
    cells = json.loads(page.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if reference_book.REFERENCE_TAG in c["metadata"].get("tags", [])]


def test_a_fresh_book_root_shows_the_reference_run_labelled_on_every_page(book):
    root, checkout = book
    assert reference_book.materialize(root, code_root=checkout) == ["smoke"]
    run_dir = root / "runs" / "smoke"
    assert reference_book.reference_of(run_dir)["command"] == "kn reference runs/smoke"
    assert results.find_runs(root / "runs") and "the reference run of commit" in results.run_title(
        RunFolder(run_dir), "smoke")
    for chapter in CHAPTERS:
        (label,) = _labels(root / "book" / "runs" / "smoke" / f"{chapter}.ipynb")
        assert "reference run `smoke`" in label and "nothing on it was computed on this machine" in label
        assert "older commit" not in label  # the checkout's code is the code that made it
    # built again: one label, not two
    reference_book.materialize(root, code_root=checkout)
    assert len(_labels(root / "book" / "runs" / "smoke" / f"{sorted(CHAPTERS)[0]}.ipynb")) == 1


def test_a_chapter_whose_code_changed_since_says_so(book):
    root, checkout = book
    (checkout / "lib" / "kn" / "base" / "stats.py").write_text("X = 2\n")  # every chapter imports it
    reference_book.materialize(root, code_root=checkout)
    (label,) = _labels(root / "book" / "runs" / "smoke" / f"{sorted(CHAPTERS)[0]}.ipynb")
    assert "Made by an older commit" in label and "its code changed since" in label


def test_the_readers_own_run_is_never_mixed_with_the_reference(book):
    root, checkout = book
    reference_book.materialize(root, code_root=checkout)
    run_dir, book_dir = root / "runs" / "smoke", root / "book" / "runs" / "smoke"
    with pytest.raises(ParameterError, match="holds the reference run of commit"):
        reference_book.claim_run_dir(run_dir, book_dir, ["04_land", "05_amplification"], "01_data_adaptation")
    assert (run_dir / REFERENCE_MARKER).is_file()  # refused: nothing removed
    assert reference_book.claim_run_dir(run_dir, book_dir, ["01_data_adaptation", "02_attribution"],
                                        "01_data_adaptation")
    assert not run_dir.exists() and not book_dir.exists()
    # the reader's run of that name: the book shows it, and the reference is not copied over it
    run_dir.mkdir(parents=True)
    (run_dir / "data_summary.json").write_text("{}")
    assert reference_book.materialize(root, code_root=checkout) == []
    assert not (run_dir / REFERENCE_MARKER).exists()
    assert not reference_book.claim_run_dir(run_dir, book_dir, ["04_land"], "01_data_adaptation")

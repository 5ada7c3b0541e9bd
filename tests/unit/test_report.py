"""kn.book.report's library log: warnings and stderr that a chapter's libraries print go to the run folder, counted in one
line, and the hooks are put back."""

from __future__ import annotations

import logging
import sys
import warnings

from kn.book.report import LibraryLog


def test_library_output_goes_to_the_log_and_is_counted(tmp_path):
    stderr, showwarning = sys.stderr, warnings.showwarning
    log = LibraryLog(tmp_path / "logs" / "02_attribution.log").install()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = log.showwarning  # catch_warnings saved the hook; the chapter's stays installed
            warnings.warn("`past_key_values` is deprecated", FutureWarning)
        print("Converting:  10%|#  | 27/272\rConverting: 100%|###| 272/272", file=sys.stderr)
        logging.getLogger("transformers").addHandler(logging.NullHandler())
    finally:
        log.uninstall()
    assert sys.stderr is stderr and warnings.showwarning is showwarning
    text = (tmp_path / "logs" / "02_attribution.log").read_text()
    assert "FutureWarning (test_report.py:" in text and "deprecated" in text and "/" not in text.split("(")[1][:20]
    assert text.count("stderr: Converting") == 2
    assert (log.warnings, log.stderr_lines) == (1, 2)
    assert log.summary() == "Kept off this page: 1 library warning and 2 lines of library output, in 02_attribution.log."
    assert LibraryLog(tmp_path / "none.log").summary() is None

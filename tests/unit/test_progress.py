"""kn.base.progress: where bars write, what a line says, and the rate limit that keeps CI logs short."""

import io
import sys

import pytest
from kn.base import progress


@pytest.fixture
def to_file(tmp_path, monkeypatch):
    path = tmp_path / "progress.txt"
    monkeypatch.setenv(progress.ENV_FILE, str(path))
    return path


def lines_of(path):
    return path.read_text().splitlines() if path.exists() else []


def test_line_names_count_percent_rate_elapsed_and_time_left():
    line = progress.format_line("attribution", 212, 640, 301.0, "prompt")
    assert line == "attribution: 212/640 prompts (33%), 1.42 s/prompt, 5:01 elapsed, 10:08 left"
    assert progress.format_line("scoring", 50, 100, 2.0, "prompt") == \
        "scoring: 50/100 prompts (50%), 25.0 prompts/s, 0:02 elapsed, 0:02 left"
    assert progress.format_line("attribution", 0, 640, 0.0, "prompt") == "attribution: 0/640 prompts (0%)"
    done = progress.format_line("LAND", 10, 10, 3725.0, "epoch", {"loss": 0.0123456}, closed=True)
    assert done == "LAND: 10/10 epochs (100%), 372.50 s/epoch, 1:02:05 elapsed, loss=0.01235"
    assert progress.format_line("x", 3, 10, 3.0, closed=True).endswith("stopped")
    assert progress.format_line("stream", 7, None, 7.0, "it") == "stream: 7 it, 1.00 s/it, 0:07 elapsed"


def test_every_update_is_a_line_when_the_interval_is_zero(to_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_SECONDS, "0")
    with progress.progress(3, "work", unit="prompt") as bar:
        for _ in range(3):
            bar.update()
    lines = lines_of(to_file)
    assert [line.split(",")[0] for line in lines] == [
        "work: 0/3 prompts (0%)", "work: 1/3 prompts (33%)", "work: 2/3 prompts (66%)", "work: 3/3 prompts (100%)"]
    assert "left" in lines[1] and "left" not in lines[-1]


def test_rate_limit_keeps_only_the_first_and_the_last_line(to_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_SECONDS, "1000")
    for _ in progress.track(range(500), desc="many", unit="prompt"):
        pass
    lines = lines_of(to_file)
    assert len(lines) == 2
    assert lines[0] == "many: 0/500 prompts (0%)" and lines[1].startswith("many: 500/500 prompts (100%)")


def test_rate_limit_lets_a_line_through_once_the_interval_has_passed(to_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_SECONDS, "20")
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    with progress.progress(100, "slow") as bar:
        for _ in range(100):
            clock[0] += 1.0  # one second per item: a line every 20 items
            bar.update()
    lines = lines_of(to_file)
    assert len(lines) == 1 + 5 + 0  # the first, one per 20 s (the 100th is also the last: written once)
    assert lines[-1].startswith("slow: 100/100 it (100%)")


def test_empty_file_setting_means_no_progress_at_all(monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    progress.use_file("")
    try:
        with progress.progress(5, "quiet") as bar:
            bar.update(5)
    finally:
        monkeypatch.delenv(progress.ENV_FILE)
    captured = capsys.readouterr()
    assert captured.out == captured.err == "" and list(tmp_path.iterdir()) == []


def test_use_file_sends_later_bars_to_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    target = tmp_path / "p.txt"
    progress.use_file(target)
    try:
        assert progress.os.environ[progress.ENV_FILE] == str(target)
        for _ in progress.track([1, 2], desc="two"):
            pass
    finally:
        monkeypatch.delenv(progress.ENV_FILE)
    assert lines_of(target)[-1].startswith("two: 2/2 it (100%)")


def test_non_tty_stderr_gets_rate_limited_plain_lines(monkeypatch, capsys):
    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    monkeypatch.setenv(progress.ENV_SECONDS, "1000")
    for _ in progress.track(range(50), desc="ci", unit="prompt"):
        pass
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[-1].startswith("ci: 50/50 prompts (100%)") and "\r" not in "".join(err)


def test_terminal_gets_a_tqdm_bar(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv(progress.ENV_FILE, raising=False)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    with progress.progress(4, "bar", unit="prompt") as bar:
        bar.set_postfix(loss=0.5)
        bar.update(4)
    text = terminal.getvalue()
    assert "\r" in text and "4/4" in text and "bar" in text


def test_track_without_a_length_and_a_stopped_loop(to_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_SECONDS, "0")
    for item in progress.track((i for i in range(10)), desc="gen"):
        if item == 3:
            break
    lines = lines_of(to_file)
    assert lines[0] == "gen: 0 it" and lines[-1].startswith("gen: 3 it")
    for _ in progress.track(range(10), desc="cut"):
        break
    assert lines_of(to_file)[-1].endswith("stopped")


def test_postfix_is_shown(to_file, monkeypatch):
    monkeypatch.setenv(progress.ENV_SECONDS, "0")
    with progress.progress(2, "LAND training", unit="epoch") as bar:
        bar.update()
        bar.set_postfix(loss=1 / 3, lr=0.01)
        bar.update()
    assert lines_of(to_file)[-1].endswith("loss=0.3333, lr=0.01")


def test_an_unwritable_file_never_stops_the_work(tmp_path, monkeypatch):
    monkeypatch.setenv(progress.ENV_FILE, str(tmp_path / "no" / "such" / "folder" / "p.txt"))
    monkeypatch.setenv(progress.ENV_SECONDS, "0")
    assert sum(progress.track(range(4), desc="x")) == 6


def test_total_comes_first():
    with pytest.raises(TypeError, match="total must be a count"):
        progress.progress("LAND training")
    for total, expected in ((None, None), (4.0, 4)):
        with progress.progress(total, "x") as bar:
            assert bar.total == expected

"""kn.data.download against a real HTTP server on 127.0.0.1, serving small files laid out like raw.githubusercontent.com."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
from kn.base.errors import DataFileError
from kn.data import download
from kn.data.download import PINNED_FILES, PinnedFile, fetch, resolve_data_dir, verify

# Read before the autouse fixture below clears it: the real data folder, set by the test command.
REAL_DATA_DIR = os.environ.get("KN_DATA_DIR")

# Small stand-ins for the pinned files: local_path -> (path on the server, content).
FIXTURE_FILES = {
    "Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json": (
        "Hunter-DDM/knowledge-neurons/c0ffee/data/PARAREL/query_pairs.json",
        b'{"P101": [], "P19": []}\n',
    ),
    "pararel/patterns/P101.jsonl": (
        "yanaiela/pararel/beef/data/pattern_data/graphs_json/P101.jsonl",
        b'{"pattern": "[X] works in the field of [Y]."}\n',
    ),
    "pararel/patterns/P19.jsonl": (
        "yanaiela/pararel/beef/data/pattern_data/graphs_json/P19.jsonl",
        b'{"pattern": "[X] was born in [Y]."}\n',
    ),
}


def pinned_fixture_files(content_for_hash=None) -> tuple[PinnedFile, ...]:
    """PinnedFiles for FIXTURE_FILES; content_for_hash(local_path, content) lets a test pin a wrong hash."""
    pinned = []
    for local_path, (server_path, content) in FIXTURE_FILES.items():
        hashed = content_for_hash(local_path, content) if content_for_hash else content
        url = f"{download.GITHUB_RAW}/{server_path}"
        pinned.append(PinnedFile(local_path, url, hashlib.sha256(hashed).hexdigest()))
    return tuple(pinned)


def write_data_folder(root: Path) -> Path:
    for local_path, (_, content) in FIXTURE_FILES.items():
        (root / local_path).parent.mkdir(parents=True, exist_ok=True)
        (root / local_path).write_bytes(content)
    return root


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    # No test may read the user's KN_DATA_DIR or write into the user's cache.
    monkeypatch.delenv("KN_DATA_DIR", raising=False)
    monkeypatch.setenv("KN_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def server(tmp_path):
    """(base_url, requested paths) of an HTTP server on 127.0.0.1 serving FIXTURE_FILES."""
    served = tmp_path / "served"
    for server_path, content in FIXTURE_FILES.values():
        (served / server_path).parent.mkdir(parents=True, exist_ok=True)
        (served / server_path).write_bytes(content)
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    # A short poll interval so that shutdown() returns quickly.
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", requested
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_into_empty_cache_then_nothing_more(server, tmp_path):
    base_url, requested = server
    root = resolve_data_dir(base_url=base_url, files=pinned_fixture_files())
    assert root == tmp_path / "cache" / "data"
    for local_path, (_, content) in FIXTURE_FILES.items():
        assert (root / local_path).read_bytes() == content
    assert len(requested) == len(FIXTURE_FILES)

    assert resolve_data_dir(base_url=base_url, files=pinned_fixture_files()) == root
    assert len(requested) == len(FIXTURE_FILES)  # all present with the right hash: nothing fetched


def test_file_with_wrong_hash_is_downloaded_again(server, tmp_path):
    base_url, requested = server
    pinned = pinned_fixture_files()[1]
    target = tmp_path / "root" / pinned.local_path
    target.parent.mkdir(parents=True)
    target.write_bytes(b"edited\n")
    assert fetch(pinned, tmp_path / "root", base_url=base_url) == target
    assert target.read_bytes() == FIXTURE_FILES[pinned.local_path][1]
    assert len(requested) == 1


def test_checksum_mismatch_names_both_hashes_and_leaves_no_file(server, tmp_path):
    base_url, _ = server
    pinned = pinned_fixture_files(lambda local_path, content: b"something else")[0]
    served_hash = hashlib.sha256(FIXTURE_FILES[pinned.local_path][1]).hexdigest()
    with pytest.raises(DataFileError) as error:
        fetch(pinned, tmp_path / "root", base_url=base_url)
    message = str(error.value)
    assert pinned.sha256 in message and served_hash in message
    assert "/Hunter-DDM/knowledge-neurons/c0ffee/data/PARAREL/query_pairs.json" in message
    assert [p for p in (tmp_path / "root").rglob("*") if p.is_file()] == []


def test_http_404_names_the_url(server, tmp_path):
    base_url, _ = server
    url = f"{download.GITHUB_RAW}/yanaiela/pararel/beef/P999.jsonl"
    missing = PinnedFile("pararel/patterns/P999.jsonl", url, "0" * 64)
    with pytest.raises(DataFileError, match=f"{base_url}/yanaiela/pararel/beef/P999.jsonl.*404.*KN_DATA_DIR"):
        fetch(missing, tmp_path / "root", base_url=base_url)
    assert [p for p in (tmp_path / "root").rglob("*") if p.is_file()] == []


def test_unreachable_host_names_the_url(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with pytest.raises(DataFileError, match=f"could not download {closed_url}/.*KN_DATA_DIR"):
        fetch(pinned_fixture_files()[0], tmp_path / "root", base_url=closed_url, timeout=5)


def test_cache_without_download_must_be_complete(tmp_path):
    with pytest.raises(DataFileError, match="download=True"):
        resolve_data_dir(download=False, files=pinned_fixture_files())
    write_data_folder(tmp_path / "cache" / "data")
    assert resolve_data_dir(download=False, files=pinned_fixture_files()) == tmp_path / "cache" / "data"


def test_explicit_folder_needs_the_fact_file_and_may_be_a_slice(tmp_path):
    root = write_data_folder(tmp_path / "mine")
    # a slice of PARAREL (some relations' patterns missing) is a valid folder: kn.data.pararel names a missing pattern file
    # when it reads the relation
    (root / "pararel/patterns/P19.jsonl").unlink()
    assert resolve_data_dir(root, files=pinned_fixture_files()) == root
    (root / "Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json").unlink()
    with pytest.raises(DataFileError) as error:
        resolve_data_dir(root, files=pinned_fixture_files())
    assert str(root / "Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json") in str(error.value)
    assert "P101" not in str(error.value)


def test_kn_data_dir_is_honoured_and_an_explicit_folder_wins(tmp_path, monkeypatch):
    from_env = write_data_folder(tmp_path / "from_env")
    monkeypatch.setenv("KN_DATA_DIR", str(from_env))
    assert resolve_data_dir(files=pinned_fixture_files()) == from_env
    explicit = write_data_folder(tmp_path / "explicit")
    assert resolve_data_dir(explicit, files=pinned_fixture_files()) == explicit

    (from_env / "pararel/patterns/P101.jsonl").unlink()
    with pytest.raises(DataFileError, match="(?s)KN_DATA_DIR.*P101.jsonl.*unset it"):
        resolve_data_dir(files=pinned_fixture_files())


def test_local_folders_are_not_checksummed_but_verify_reports_edits(tmp_path):
    root = write_data_folder(tmp_path / "mine")
    (root / "pararel/patterns/P101.jsonl").write_bytes(b"edited\n")
    assert resolve_data_dir(root, files=pinned_fixture_files()) == root
    problems = verify(root, pinned_fixture_files())
    assert len(problems) == 1 and "P101.jsonl: sha256" in problems[0]


def test_pinned_files_table():
    assert len(PINNED_FILES) == 35
    assert len({p.local_path for p in PINNED_FILES}) == 35
    assert all(p.url.startswith(download.GITHUB_RAW + "/") and len(p.sha256) == 64 for p in PINNED_FILES)


def test_real_pinned_files_verify_against_kn_data_dir(monkeypatch):
    assert REAL_DATA_DIR, "set KN_DATA_DIR to the real data folder (with the PARAREL layout) to run this test"
    assert verify(REAL_DATA_DIR) == []
    monkeypatch.setenv("KN_DATA_DIR", REAL_DATA_DIR)
    assert resolve_data_dir() == Path(REAL_DATA_DIR)

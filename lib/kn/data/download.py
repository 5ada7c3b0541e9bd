"""kn.data.download: the PARAREL data, from a local folder or downloaded into the user cache, verified by SHA-256.

API
    resolve_data_dir(data_dir=None, *, download=True, base_url=None, cache=None, files=None) -> Path
        order: the data_dir argument, else env KN_DATA_DIR, else <cache>/data, where <cache> is the cache
        argument, else env KN_CACHE_DIR, else $XDG_CACHE_HOME/kn-study, else ~/.cache/kn-study;
        missing or changed cache files are downloaded when download=True.
        A given folder must hold the fact file (not checksummed: users may edit it, or keep a slice of PARAREL).
    fetch(pinned, root, base_url=None, timeout=60) -> Path   # root/pinned.local_path; downloaded unless hash matches
    verify(root, files=None) -> list[str]                    # one line per missing or changed file; [] when all match
    PINNED_FILES: tuple[PinnedFile(local_path, url, sha256), ...]   # 35: query_pairs.json + 34 relation patterns
    base_url replaces "https://raw.githubusercontent.com" in each URL (tests use a local server).

Layout of a data folder (as written into the cache):
    Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json
    pararel/patterns/<REL>.jsonl
Both upstream repositories are MIT licensed.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple, Sequence

from kn.base.errors import DataFileError
from kn.base.io import atomic_write, cache_dir
from kn.base.progress import track

GITHUB_RAW = "https://raw.githubusercontent.com"
KN_REPO, KN_COMMIT = "Hunter-DDM/knowledge-neurons", "922dfd9e05ef55f46af078ba4bd334989a45a618"
PARAREL_REPO, PARAREL_COMMIT = "yanaiela/pararel", "cb5554678457beb5ac163d888f1ce8cf174b3f0b"
QUERY_PAIRS_SHA256 = "ada5c1530d9554b774614179e57a7e2a9e11c30aadddded1aa6dcca0b0f05f3a"

# sha256 of data/pattern_data/graphs_json/<REL>.jsonl at PARAREL_COMMIT, for the relations of query_pairs.json.
PATTERN_SHA256 = {
    "P101": "199eb2fbdcb6c26ac81ac0d48b485521d57fa961c9902840d4f5fc937f59e94c",
    "P103": "edb4df57360abb418ec72e96d518bd42f216ccac578bedbca6f5f769c76951fb",
    "P106": "4066382c8e5d6038024aa1c601aa53fab7c48596677ed26d71240597d42ee5c1",
    "P108": "0fb4993970e59f5acec2af83b3bba9c54b171db201f46ad28967f79a054dc220",
    "P127": "aa5d85fe2e44b9776e6b16b7ff7ef462a85f09b33315d31106939f0e74fd7917",
    "P1303": "5918d169f43d7486459d421816a9d2cd1935c4e857f2de01ebcae7120dddb94c",
    "P136": "677f9878d4d26a53de5d5c874fe5e28cd1a37b3ef678acac36944df4c01134ca",
    "P1376": "67c9bc7dc08bcca42ba5d5fbd11b35c0bcf41a961bba87d760e4b29f196a9bbd",
    "P138": "a15d8689fb52c2245cb76244ac4fce40eef868c445473b94d5888586a46fc3ad",
    "P140": "1adf3a553047050b195e9305efe0fb3bf34d913b320818a3e88c1fdd161789df",
    "P1412": "b2869ca24f313bbfd815a02259bf53c37ce39df0b11a2704f791df47b1e12b3d",
    "P159": "9679b341f4fb8ea9d48d9398bc439a8869908e485818638a4345437f9ee97002",
    "P176": "13aa5d5af04b58b16b9b6a99ba6c96dbdef7a4fae7dcceaffaa67a2ce5301401",
    "P178": "5fbdd8e8a6dc85a686a7067bdc0d6fd35307e5c17b121ddcecdcd2da448d1313",
    "P19": "7c6016bb80b386b8e7f8a99d5c73ea925ed2b9f29d5c0c9c252938c9533b3522",
    "P190": "5edac1cbc8454283623b6e20304a78c53b28ce0bb998826d358a8739809077a3",
    "P20": "a209a17ecb4ccf0f67261072e97596900d9e77bdd70c3e8a99654af1039f98a4",
    "P264": "53274030ad439f0bfb85bda4390fd7f7a9868c8a3f68e151e08c91e596e7bc74",
    "P27": "e5ce71502ec3c287749e649a1ac4640878801b3dfc49df8eea1c8fca65347f76",
    "P279": "ff2b73df5edb13718a5f4bb2004e924ff99314e6625bd35c0ca4aab9dd7363ec",
    "P30": "69f0152df42e17dca5c3181ddf1ccca8110fba50fd4b61fe9e48c22c8e5adb93",
    "P36": "78cbc36c71073ee993b2f7194c9b216af839859cefb0186cef2c2bc89f377def",
    "P364": "c96f42f6dde8ed78be284bfc3666056304d399e0372beb2fb629382feeb9ca3f",
    "P37": "b5c4ad242edcf9104c4fb0caa3a470ac3bc2a5cfd02f160d5b0d96969f63bfea",
    "P39": "51de02294859454289284c781bbcd54e038842d0040e55f598ead3652035307f",
    "P407": "a87b9e7d7728de1f782013edee4567e7c5fe6242419c691f48a4177d166df532",
    "P413": "3d1e94ada2e9f27eb99275f2e07c80d21b9a5ea677fe6fa751395ffc778ba0fe",
    "P449": "cea08d3d7df17f648d84814a7c607476f8fc4291b94976b88658f1b35cf90fb8",
    "P463": "7973e666b4e33c05f8a8cfec6cbd0b3d09edf40bf9a7a3833e12bc3737399ce6",
    "P47": "329108ae3e0138c7af09697b1ea33e1808ccdbe8931d05c02b5334b686b229e2",
    "P495": "3a2abf7c9ffcf1753e27efa15a915d838c472f5e52f249410d0af47cfac7d9c2",
    "P530": "cc6193686be94ed9fe37deb765753e11c714f6f473e2b2bc171839700b31915d",
    "P740": "dc588e68ea43ac4f9ef3942d3d3b4b0aee0c099f72001caf51036b0da54f61a7",
    "P937": "05a2822a2d62a012ea80f6e92401b6990a5ce05fc6543a4df6b34b4b3cacc2dd",
}


class PinnedFile(NamedTuple):
    local_path: str  # relative to the data folder
    url: str
    sha256: str


PINNED_FILES: tuple[PinnedFile, ...] = (
    PinnedFile(
        "Hunter-DDM_knowledge-neurons/PARAREL/query_pairs.json",
        f"{GITHUB_RAW}/{KN_REPO}/{KN_COMMIT}/data/PARAREL/query_pairs.json",
        QUERY_PAIRS_SHA256,
    ),
) + tuple(
    PinnedFile(
        f"pararel/patterns/{relation}.jsonl",
        f"{GITHUB_RAW}/{PARAREL_REPO}/{PARAREL_COMMIT}/data/pattern_data/graphs_json/{relation}.jsonl",
        sha256,
    )
    for relation, sha256 in PATTERN_SHA256.items()
)

_FIX_HINT = "set KN_DATA_DIR to a folder with the PARAREL layout (see kn.data.download), or unset it to download"
_OFFLINE_HINT = "to work offline, set KN_DATA_DIR to a folder holding the PARAREL files (see kn.data.download)"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_current(path: Path, sha256: str) -> bool:
    return path.is_file() and _sha256(path) == sha256


def _source_url(pinned: PinnedFile, base_url: str | None) -> str:
    if base_url is None:
        return pinned.url
    if not pinned.url.startswith(GITHUB_RAW + "/"):
        raise ValueError(f"base_url can only replace {GITHUB_RAW}, not the host of {pinned.url}")
    return base_url.rstrip("/") + pinned.url[len(GITHUB_RAW):]


def _download(pinned: PinnedFile, target: Path, base_url: str | None, timeout: float) -> None:
    """Stream ``pinned`` into ``target`` through kn.base.io.atomic_write: a failed download or a checksum mismatch
    leaves no partial file."""
    url = _source_url(pinned, base_url)

    def write(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            except urllib.error.HTTPError as e:
                raise DataFileError(f"download of {url} failed: HTTP {e.code} {e.reason}; {_OFFLINE_HINT}") from e
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                reason = getattr(e, "reason", e)
                raise DataFileError(f"could not download {url}: {reason}; {_OFFLINE_HINT}") from e
        got = digest.hexdigest()
        if got != pinned.sha256:
            raise DataFileError(f"checksum mismatch for {url}: expected sha256 {pinned.sha256}, got {got}")

    atomic_write(target, write)


def fetch(pinned: PinnedFile, root: str | Path, base_url: str | None = None, timeout: float = 60) -> Path:
    """root/pinned.local_path, downloaded unless already there with the pinned hash."""
    target = Path(root) / pinned.local_path
    if not _is_current(target, pinned.sha256):
        _download(pinned, target, base_url, timeout)
    return target


def verify(root: str | Path, files: Sequence[PinnedFile] | None = None) -> list[str]:
    """One line per pinned file that is missing under root or differs from its pinned hash."""
    problems = []
    for pinned in PINNED_FILES if files is None else files:
        path = Path(root) / pinned.local_path
        if not path.is_file():
            problems.append(f"{path}: missing")
        elif (got := _sha256(path)) != pinned.sha256:
            problems.append(f"{path}: sha256 {got}, expected {pinned.sha256}")
    return problems


def _require_all_present(root: Path, files: Sequence[PinnedFile], origin: str, hint: str) -> Path:
    missing = [str(root / p.local_path) for p in files if not (root / p.local_path).is_file()]
    if missing:
        listed = "\n  ".join(missing)
        raise DataFileError(f"{origin} {root} lacks {len(missing)} data file(s):\n  {listed}\nFix: {hint}")
    return root


def resolve_data_dir(
    data_dir: str | Path | None = None,
    *,
    download: bool = True,
    base_url: str | None = None,
    cache: Path | None = None,
    files: Sequence[PinnedFile] | None = None,
) -> Path:
    """The folder to read the PARAREL data from; see the module docstring for the order."""
    files = PINNED_FILES if files is None else files
    if data_dir is not None:
        # A folder given for this run may be a slice of PARAREL (a few relations): it needs the fact file; a
        # relation's missing pattern file is named when the relation is read (kn.data.pararel.read_templates).
        hint = "pass a folder with the PARAREL layout (see kn.data.download), or no folder to use KN_DATA_DIR or the cache"
        return _require_all_present(Path(data_dir), [p for p in files if p.local_path.endswith("query_pairs.json")],
                                    "data folder", hint)
    if os.environ.get("KN_DATA_DIR"):
        return _require_all_present(Path(os.environ["KN_DATA_DIR"]), files, "KN_DATA_DIR", _FIX_HINT)

    root = (Path(cache) if cache is not None else cache_dir()) / "data"
    if not download:
        return _require_all_present(root, files, "cache", f"call with download=True, or {_OFFLINE_HINT}")
    stale = [p for p in files if not _is_current(root / p.local_path, p.sha256)]
    if len(stale) > 1:

        stale = track(stale, total=len(stale), desc="downloading the PARAREL data", unit="file")
    for pinned in stale:
        _download(pinned, root / pinned.local_path, base_url, timeout=60)
    return root

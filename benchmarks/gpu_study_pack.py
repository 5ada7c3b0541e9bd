"""benchmarks/gpu_study.sh's helpers: export a run's coarse sets, pack what a GPU study made into one archive.

    python benchmarks/gpu_study_pack.py coarse RUN_DIR OUT.parquet [--t T]
    python benchmarks/gpu_study_pack.py pack RUN_DIR PAGES_DIR LOG_DIR OUT.tar.gz [--limit-mib 16]

coarse: every prompt of RUN_DIR/prompts.parquet with stored scores, its coarse set at t (default: the run's
    coarse_threshold from params.json) as sorted neuron ids delta-encoded (uint32 first id, then uint16 gaps where
    they fit; column `deltas`, with `n` and `split`), zstd-compressed parquet: ~1.5 bytes a neuron, so the paper's
    277,170 prompts x ~25 neurons fit in about 10 MB. kn.attribution.store.AttributionStore.coarse_sets_by_prompt
    reads them; prompts without scores are left out and counted.
pack: a gzipped tar under --limit-mib, filled tier by tier while it fits: 1 the run folder's *.json (chapter summaries,
    params, timings, environment) and LOG_DIR (the study's log and status); 2 the executed pages (PAGES_DIR/*.ipynb);
    3 the coarse sets (all prompts; else the test prompts only); 4 the run folder's other tables (*.parquet but the
    prompts); 5 prompts.parquet. What did not fit is named in MANIFEST.json inside the archive. Exit 1 when even
    tier 1 is over the limit.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from kn.attribution.store import AttributionStore  # noqa: E402


def encode(ids) -> bytes:
    """Sorted ids as bytes: a uint32 count and first id, then uint16 gaps (a gap over 65535 is 0xFFFF then uint32)."""
    ids = np.sort(np.asarray(list(ids), dtype=np.int64))
    out = bytearray(np.array([ids.size], "<u4").tobytes())
    if ids.size:
        out += np.array([ids[0]], "<u4").tobytes()
        gaps = np.diff(ids)
        if (gaps < 0xFFFF).all():  # the usual case: one vectorised write
            out += gaps.astype("<u2").tobytes()
        else:
            for gap in gaps:
                out += (np.array([gap], "<u2").tobytes() if gap < 0xFFFF
                        else b"\xff\xff" + np.array([gap], "<u4").tobytes())
    return bytes(out)


def decode(data: bytes) -> list[int]:
    n = int(np.frombuffer(data[:4], "<u4")[0])
    if not n:
        return []
    ids, pos = [int(np.frombuffer(data[4:8], "<u4")[0])], 8
    while len(ids) < n:
        gap = int(np.frombuffer(data[pos:pos + 2], "<u2")[0])
        pos += 2
        if gap == 0xFFFF:
            gap, pos = int(np.frombuffer(data[pos:pos + 4], "<u4")[0]), pos + 4
        ids.append(ids[-1] + gap)
    return ids


def export_coarse(run_dir: Path, out: Path, t: float | None = None) -> dict:
    recorded = json.loads((run_dir / "params.json").read_text()) if (run_dir / "params.json").is_file() else {}
    chapters = recorded.get("chapters", {})  # {chapter: the parameters it ran with}
    params = chapters.get("02_attribution") or next(iter(chapters.values()), {})
    t = float(t if t is not None else params.get("coarse_threshold", 0.2))
    prompts = pd.read_parquet(run_dir / "prompts.parquet", columns=["prompt_id", "prompt", "target_id", "split"])
    store = AttributionStore.open(run_dir / "attribution")
    by_key = store.coarse_sets(t)
    keys = store.keys_for(prompts)
    have = [k in by_key for k in keys]
    kept = prompts[have]
    frame = pd.DataFrame({"prompt_id": kept["prompt_id"].to_numpy(), "split": kept["split"].to_numpy(),
                          "n": [len(by_key[k]) for k, h in zip(keys, have) if h],
                          "deltas": [encode(by_key[k]) for k, h in zip(keys, have) if h]})
    frame.to_parquet(out, index=False, compression="zstd")
    return {"t": t, "prompts": len(prompts), "exported": len(frame), "without_scores": len(prompts) - len(frame)}


def _archive(files: list[tuple[Path, str]], manifest: dict) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
        for path, name in files:
            tar.add(str(path), arcname=name)
        data = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo("MANIFEST.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def pack(run_dir: Path, pages: Path, logs: Path, out: Path, limit_mib: float = 16.0) -> dict:
    limit = int(limit_mib * 2**20)
    name = run_dir.name
    coarse_all, coarse_test = logs / "coarse_sets.parquet", logs / "coarse_sets_test.parquet"
    if coarse_all.is_file() and not coarse_test.is_file():
        frame = pd.read_parquet(coarse_all)
        frame[frame["split"] == "test"].to_parquet(coarse_test, index=False, compression="zstd")
    tables = sorted(p for p in run_dir.glob("*.parquet") if p.name != "prompts.parquet")
    tiers = [
        ("summaries", [(p, f"{name}/{p.name}") for p in sorted(run_dir.glob("*.json"))]
         + [(p, f"study/{p.name}") for p in sorted(logs.glob("*")) if p.suffix in (".log", ".json", ".txt")]),
        ("pages", [(p, f"pages/{p.name}") for p in sorted(pages.glob("*.ipynb"))]),
        ("coarse sets, every prompt", [(coarse_all, "coarse_sets.parquet")] if coarse_all.is_file() else []),
        ("run tables", [(p, f"{name}/{p.name}") for p in tables]),
        ("prompts", [(run_dir / "prompts.parquet", f"{name}/prompts.parquet")]
         if (run_dir / "prompts.parquet").is_file() else []),
    ]
    chosen, manifest = [], {"run": name, "limit_bytes": limit, "tiers": [], "left_out": []}
    data = b""
    for tier, files in tiers:
        trial = chosen + files
        candidate = _archive(trial, {**manifest, "tiers": manifest["tiers"] + [tier]})
        if len(candidate) <= limit:
            chosen, data = trial, candidate
            manifest["tiers"].append(tier)
            continue
        if tier.startswith("coarse") and coarse_test.is_file():  # the test prompts' sets, a tenth of the size
            trial = chosen + [(coarse_test, "coarse_sets_test.parquet")]
            candidate = _archive(trial, {**manifest, "tiers": manifest["tiers"] + ["coarse sets, test prompts"]})
            if len(candidate) <= limit:
                chosen, data = trial, candidate
                manifest["tiers"].append("coarse sets, test prompts")
                manifest["left_out"].append("coarse sets of the train prompts")
                continue
        if tier == "pages":  # as many pages as fit, the smallest first
            for path, arc in sorted(files, key=lambda f: f[0].stat().st_size):
                trial = chosen + [(path, arc)]
                candidate = _archive(trial, manifest)
                if len(candidate) <= limit:
                    chosen, data = trial, candidate
                else:
                    manifest["left_out"].append(arc)
            manifest["tiers"].append("pages (some)")
            continue
        manifest["left_out"] += [arc for _, arc in files]
        if not data:
            raise SystemExit(f"gpu_study_pack: even the summaries exceed {limit_mib} MiB")
    data = _archive(chosen, manifest)
    if len(data) > limit:
        raise SystemExit(f"gpu_study_pack: the archive is {len(data)} bytes, over {limit}")
    out.write_bytes(data)
    manifest["bytes"] = len(data)
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("coarse")
    c.add_argument("run_dir", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--t", type=float, default=None)
    p = sub.add_parser("pack")
    for arg in ("run_dir", "pages", "logs", "out"):
        p.add_argument(arg, type=Path)
    p.add_argument("--limit-mib", type=float, default=16.0)
    args = parser.parse_args(argv)
    if args.command == "coarse":
        print(json.dumps(export_coarse(args.run_dir, args.out, args.t)))
    else:
        manifest = pack(args.run_dir, args.pages, args.logs, args.out, args.limit_mib)
        print(json.dumps({k: manifest[k] for k in ("bytes", "tiers", "left_out")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

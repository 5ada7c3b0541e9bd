"""The architecture of lib/kn: layers that import only downwards (the import-linter contract in pyproject.toml), no
import circle counting every import (also those inside functions), inner imports only for commented heavy optional
dependencies, a cheap ``kn.base``, modules of one job, and API docstring lines that match the signatures they name."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

LIB = Path(__file__).resolve().parents[2] / "lib" / "kn"
MAX_LINES = 470  # "about 450": the largest module is reported in the README's Layout section
# Imported inside a function only where importing the module at the top would load something heavy for every user of
# the module (torch for a file format, transformers for a name check, matplotlib outside a notebook, papermill ...).
HEAVY = {"torch", "transformers", "matplotlib", "seaborn", "IPython", "papermill", "nbformat", "safetensors", "tqdm",
         "jupyter_book", "gguf", "scipy", "statsmodels"}


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(LIB.rglob("*.py")):
        parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def test_the_layer_contract_is_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(LIB.parents[1] / "pyproject.toml")], capture_output=True,
                          text=True, cwd=LIB.parents[1])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_counting_imports_inside_functions():
    graph = grimp.build_graph("kn")
    # a package imports its own modules only to re-export them (kn.book.findings, kn.book.figures,
    # kn.core.adapters); an edge from a module to its own package is not a circle of modules
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if not m.startswith(i + ".")}
             for m in graph.modules}
    assert _cycles(edges) == []
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]  # the check itself


def _inner_imports(path: Path):
    lines = path.read_text().splitlines()
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    commented = any("#" in lines[i] for i in range(node.lineno - 2, node.end_lineno))
                    yield node.lineno, (module or ""), commented


def test_imports_inside_functions_are_commented_heavy_optional_dependencies():
    bad = [f"{path.relative_to(LIB.parent)}:{line}: {module}" + ("" if commented else " (no comment)")
           for _, path in _modules() for line, module, commented in _inner_imports(path)
           if module.split(".")[0] not in HEAVY or not commented]
    assert bad == []


def test_importing_the_base_layer_loads_no_torch():
    base = [name for name, _ in _modules() if name.startswith("kn.base")]
    code = ("import sys\n" + "".join(f"import {m}\n" for m in base) +
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_modules_hold_one_job_each():
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules()}
    assert {n: s for n, s in sizes.items() if s > MAX_LINES} == {}


# --------------------------------------------------------------------------- API lines
_ENTRY = re.compile(r"^    (\.?)([A-Za-z_][A-Za-z0-9_]*)\(")


def _parameters(text: str) -> list[str] | None:
    """Parameter names of the call text starting at '(' (None when it is not a parameter list, e.g. a shape)."""
    depth, current, names = 0, "", []
    for i, ch in enumerate(text):
        if ch in "([{":
            depth += 1
            if depth == 1:
                continue
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                names.append(current)
                break
        if depth == 1 and ch == ",":
            names.append(current)
            current = ""
        elif depth >= 1:
            current += ch
    out = []
    for raw in names:
        if raw.strip()[:1] in "[({'\"" and raw.strip():
            return None  # a literal, e.g. parse_overrides([(key, text), ...]): not a parameter list
        token = raw.strip().split("=")[0].split(":")[0].strip()
        token = re.sub(r"\s*\[.*$", "", token).strip()  # "input_ids [seq]": a shape after the name
        if token in ("", "*", "/"):
            continue
        token = token.lstrip("*")
        if token == "..." or not token.isidentifier():
            return None
        out.append(token)
    return out


def _api_entries(doc: str):
    """(is_method, name, parameter names, line) of each entry of the docstring's API section written as a call."""
    lines = inspect.cleandoc(doc).splitlines()
    if "API" not in [line.strip() for line in lines]:
        return
    start = [line.strip() for line in lines].index("API") + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith(" "):
            break
        block.append(line)
    for i, line in enumerate(block):
        match = _ENTRY.match(line)
        if not match:
            continue
        # the call may continue on the next lines (deeper indent)
        text = line[match.end() - 1:]
        j = i + 1
        while text.count("(") > text.count(")") and j < len(block):
            text += " " + block[j].strip()
            j += 1
        params = _parameters(text)
        if params is not None:
            yield bool(match.group(1)), match.group(2), params, line.strip()


def _signature(obj) -> dict[str, bool]:
    """Parameter name -> whether it has a default, in order."""
    target = obj.__init__ if inspect.isclass(obj) else obj
    params = list(inspect.signature(target).parameters.values())
    if inspect.isclass(obj) or (params and params[0].name in ("self", "cls")):
        params = params[1:]
    return {p.name: p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params}


def _api_mismatches(module) -> list[str]:
    bad, current_class = [], None
    for is_method, name, documented, line in _api_entries(module.__doc__ or ""):
        owner = current_class if is_method else module
        obj = getattr(owner, name, None) if owner is not None else None
        if not is_method and inspect.isclass(obj):
            current_class = obj
        if obj is None or not callable(obj):
            bad.append(f"{module.__name__}: names {name!r}, which it does not define: {line}")
            continue
        try:
            actual = _signature(obj)
        except (TypeError, ValueError):
            continue
        # a line may leave out parameters that have defaults (progress=, device=); it may not name one the function
        # lacks, change their order, or leave out one without a default
        left_out = [n for n, has_default in actual.items() if n not in documented and not has_default]
        if [n for n in actual if n in documented] != documented or left_out:
            bad.append(f"{module.__name__}.{name}: documented ({', '.join(documented)}), "
                       f"signature ({', '.join(actual)})")
    return bad


@pytest.mark.parametrize("name", [name for name, _ in _modules() if name != "kn.__main__"])
def test_api_lines_match_the_signatures(name):
    assert _api_mismatches(importlib.import_module(name)) == []


def test_the_api_check_sees_a_drifted_line():
    class Drifted:
        """x.

        API
            compare(a, b, *, higher=True) -> str
        """

        @staticmethod
        def compare(a, b, *, fmt="{:.1%}"):
            return ""

    assert _api_mismatches(Drifted) == ["Drifted.compare: documented (a, b, higher), signature (a, b, fmt)"]
    Drifted.__doc__ = Drifted.__doc__.replace(", *, higher=True", "")
    assert _api_mismatches(Drifted) == []  # leaving out a parameter with a default is allowed

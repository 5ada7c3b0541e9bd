"""kn.base.paramfiles: where parameters come from: params/<run>.yaml files (duplicate keys refused), a notebook's
parameters cell, and the cell itself generated from kn.base.params.StudyParams.

API
    load_params(path)                a params/<model>.yaml file -> StudyParams
    read_params_file(path) -> dict   the file's values, checked, as written (no defaults filled in); a folder, an
                                     empty file, a non-mapping, duplicate keys and non-UTF-8 text are refused
    read_yaml(text, source)          YAML read safely with duplicate keys refused (ParameterError names source, line)
    resolve_notebook_params(namespace) -> (StudyParams, dict of where each non-default value came from)
        defaults < params_file < values edited in the notebook's cell < overrides (the command line's -p)
    parameters_cell(chapter) -> str  the source of that cell, generated from the fields' defaults and help
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import yaml

from kn.base.errors import ParameterError
from kn.base.io import read_text
from kn.base.params import (
    CHAPTER_KEYS,
    DEFAULT_PARAMS_FILE,
    StudyParams,
    _checked,
    project_root,
)


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ParameterError(f"line {key_node.start_mark.line + 1}: key {key!r} is given twice "
                                     f"(first on line {seen[key]})")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str):
    """YAML text read safely, duplicate keys refused; ParameterError names ``source`` and the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except ParameterError as err:
        raise ParameterError(f"{source}: {err}") from None
    except yaml.YAMLError as err:
        raise ParameterError(f"{source}: not valid YAML: {' '.join(str(err).split())}") from err


def read_params_file(path: str | Path) -> dict:
    """The values a params file sets (checked: known keys, right types), without defaults. A folder, an empty file
    or one that is not a mapping is refused: an empty file would silently start the full default study."""
    path = Path(path)
    if path.is_dir():
        raise ParameterError(f"params file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise ParameterError(f"params file {path} does not exist")
    values = read_yaml(read_text(path), str(path))
    if values is None:
        raise ParameterError(f"params file {path} is empty: give at least `model:` (params/smollm2-135m.yaml is the "
                             "default run)")
    return _checked(values, str(path))


def load_params(path: str | Path) -> StudyParams:
    return StudyParams.from_mapping(read_params_file(path), source=str(path))


def resolve_notebook_params(namespace: typing.Mapping) -> tuple[StudyParams, dict[str, str]]:
    """A chapter's parameters from its globals: defaults < ``params_file`` < cell edits < ``overrides``.

    namespace: the notebook's ``globals()`` after its parameters cell (and papermill's injected cell). It may hold
    ``params_file`` (path, relative to the project root; "" -> DEFAULT_PARAMS_FILE), ``overrides`` (a dict, set by
    `kn chapter ... -p KEY VALUE`) and any StudyParams key. A key counts as edited in the cell when its value
    differs from the StudyParams default: the cells list the defaults, so an unedited notebook runs exactly the
    params file's run, and changing one value in the cell re-computes the chapter with it.
    Returns (params, origin) where origin maps every key whose value is not the default to "params file",
    "notebook cell" or "override"."""
    file = namespace.get("params_file") or DEFAULT_PARAMS_FILE
    path = Path(file) if Path(file).is_absolute() else project_root() / file
    from_file = read_params_file(path)
    defaults = StudyParams().as_dict()
    cell = _checked({k: namespace[k] for k in StudyParams.keys() if k in namespace}, "notebook parameters")
    edited = {k: v for k, v in cell.items() if v != defaults[k]}
    overrides = _checked(dict(namespace.get("overrides") or {}), "overrides")
    values = {**from_file, **edited, **overrides}
    params = StudyParams.from_mapping(values, source=f"{path.name} + notebook + overrides")
    origin = {}
    for key, value in params.as_dict().items():
        if key in overrides:
            origin[key] = "override"
        elif key in edited:
            origin[key] = "notebook cell"
        elif key in from_file:
            origin[key] = "params file"
    return params, origin


def parameters_cell(chapter: str) -> str:
    """The source of ``chapter``'s parameters cell: params_file, overrides, progress_file, then its keys with their
    defaults and meanings."""
    defaults = StudyParams()
    lines = [
        "# Defaults. The runs of the book take their values from params_file (params/<model>.yaml) and from",
        "# `kn ... -p KEY VALUE` (overrides); a value changed here takes precedence over the params file.",
        f'params_file = ""  # the run this chapter reads and adds to; empty: {DEFAULT_PARAMS_FILE}',
        "overrides = {}  # set by the kn command (-p KEY VALUE)",
        'progress_file = ""  # set by the kn command: where progress lines go (the terminal, not this page)',
    ]
    for key in CHAPTER_KEYS[chapter]:
        value = getattr(defaults, key)
        literal = json.dumps(value) if isinstance(value, str) else repr(value)
        lines.append(f"{key} = {literal}  # {StudyParams.help(key)}")
    return "\n".join(lines)

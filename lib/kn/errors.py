"""kn.errors: the one base class of every error that means "bad input", not a bug.

API
    BadInput                 base of ParameterError, DataFileError, MissingArtifact, UnknownModel, UnsupportedArchitecture
    bad_input_names() -> set[str]   class names of every BadInput subclass defined so far (the runner matches the
                                    name of an exception raised inside a notebook's kernel against it)

The command line prints such an error as one line and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class BadInput(ValueError):
    """An input the user can fix: a parameter, a data file, a model name, a missing earlier chapter."""


def bad_input_names() -> set[str]:
    seen, todo = set(), [BadInput]
    while todo:
        cls = todo.pop()
        seen.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return seen


__all__ = ["BadInput", "bad_input_names"]

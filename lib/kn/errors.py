"""kn.errors: the one base class of every error that means "bad input", not a bug.

API
    BadInput                 base of ParameterError, DataFileError, MissingArtifact, UnknownModel, UnsupportedArchitecture
    TextFileError            a file that is not UTF-8 (kn.textio)
    PromptTooLong            a prompt longer than the model's context (kn.scoring)
    EmptyPopulation          a population rule that leaves no relation (kn.population)
    RunFolderBusy            another kn holds the run folder's lock (kn.runlock)
    OutOfSpace               the disk of the run folder filled up (kn.runner)
    bad_input_names() -> set[str]   class names of every BadInput subclass defined so far (the runner matches the
                                    name of an exception raised inside a notebook's kernel against it)

The command line prints such an error as one line and exits with status 2; anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class BadInput(ValueError):
    """An input the user can fix: a parameter, a data file, a model name, a missing earlier chapter."""


class TextFileError(BadInput):
    pass


class PromptTooLong(BadInput):
    pass


class EmptyPopulation(BadInput):
    pass


class RunFolderBusy(BadInput):
    pass


class OutOfSpace(BadInput):
    pass


def bad_input_names() -> set[str]:
    seen, todo = set(), [BadInput]
    while todo:
        cls = todo.pop()
        seen.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return seen


__all__ = ["BadInput", "bad_input_names", "TextFileError", "PromptTooLong", "EmptyPopulation", "RunFolderBusy",
           "OutOfSpace"]

"""kn.base.errors: the one base class of every error that means "bad input", not a bug.

API
    BadInput                 base of ParameterError, DataFileError, MissingArtifact, UnknownModel, UnsupportedArchitecture
    TextFileError            a file that is not UTF-8 (kn.base.io)
    PromptTooLong            a prompt longer than the model's context (kn.core.scoring)
    EmptyPopulation          a population rule that leaves no relation (kn.data.population)
    RunFolderBusy            another kn holds the run folder's lock (kn.base.runlock)
    OutOfSpace               the disk of the run folder filled up (kn.book.runner)
    bad_input_names() -> set[str]   class names of every BadInput subclass defined so far (the runner matches the
                                    name of an exception raised inside a notebook's kernel against it)
    DataFileError                                            # names the file, URL or hashes at fault
    MissingArtifact;  RUN_DEFINING_KEYS (what chapter 1 fixes for a run)
    UnknownChapter (a BadInput), ChapterFailed (.chapter, .notebook, .ename, .evalue, .bad_input)
    NoScheduler, NotACheckout, DirtyCheckout, SubmitRefused: BadInput (the CLI's one line and exit status 2)

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


class ParameterError(BadInput):
    pass


class UnsupportedArchitecture(BadInput):
    pass


class UnknownModel(BadInput):
    pass


class DataFileError(BadInput):
    pass


class MissingArtifact(BadInput, FileNotFoundError):
    pass


class UnknownChapter(BadInput):
    pass


class NoScheduler(BadInput):
    pass


class NotACheckout(BadInput):
    pass


class DirtyCheckout(BadInput):
    pass


class SubmitRefused(BadInput):
    """sbatch refused a job (an unknown partition, a time limit above the partition's): its own message."""

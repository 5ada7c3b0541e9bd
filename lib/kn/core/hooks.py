"""kn.core.hooks: the one way this project puts a hook on a module (in the spirit of baukit's Trace).

API
    hooked(pre=(), post=()) -> context manager
        pre: [(module, fn(module, args) -> new args or None)], registered as forward pre-hooks
        post: [(module, fn(module, args, output) -> new output or None)], registered as forward hooks
        Every hook is removed on exit, also when the block raises.

kn.methods.interventions (scaling neurons), kn.attribution (the reference's inputs) and kn.core.adapters.base (the natural state of the
last token) all install their hooks through it, so none can leak a hook into a later forward pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable


@contextlib.contextmanager
def hooked(pre: Iterable = (), post: Iterable = ()):
    handles = []
    try:
        for module, fn in pre:
            handles.append(module.register_forward_pre_hook(fn))
        for module, fn in post:
            handles.append(module.register_forward_hook(fn))
        yield handles
    finally:
        for handle in handles:
            handle.remove()

"""``seqbert serve``'s public import path: the HTTP service lives in the :mod:`seqbert.serving` package (one module
per part: app, middlewares, event rules, micro-batching, processes); this module re-exports its public names.
Standard library only at import, like the package (``seqbert.cli`` imports it to build its parser)."""

from .serving import *  # noqa: F403 - the public names of seqbert.serving, under their old import path
from .serving import __all__  # noqa: F401

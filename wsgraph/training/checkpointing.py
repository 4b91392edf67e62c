"""Deprecated: moved to :mod:`wsgraph.training.run_checkpoints`; this path works until the next release."""

from wsgraph.deprecation import moved_module

moved_module(__name__, "wsgraph.training.run_checkpoints")

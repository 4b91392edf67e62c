"""Deprecated: moved to :mod:`wsgraph.datasets.checkpoint_folders`; this path works until the next release."""

from wsgraph.deprecation import moved_module

moved_module(__name__, "wsgraph.datasets.checkpoint_folders")

"""Deprecated: moved to :mod:`wsgraph.core.network_files`; this path works until the next release."""

from wsgraph.deprecation import moved_module

moved_module(__name__, "wsgraph.core.network_files")

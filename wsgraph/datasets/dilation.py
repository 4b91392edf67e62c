"""Deprecated: moved to :mod:`wsgraph.inrs.dilation`; this path works until the next release."""

from wsgraph.deprecation import moved_module

moved_module(__name__, "wsgraph.inrs.dilation")

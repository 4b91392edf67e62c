"""The ``wsgraph`` command line: one module per subcommand, registered in :mod:`wsgraph.cli.main`."""

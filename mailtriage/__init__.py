"""The ``mailtriage`` command line: the one package that wires every other together."""

"""The ``cmq`` command line: docopt usage texts are its documentation."""

"""The ``ptychopinn`` command line; it parses arguments and calls :mod:`ptychopinn.workflows`."""

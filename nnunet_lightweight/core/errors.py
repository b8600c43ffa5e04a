"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""


class InputError(ValueError):
    """Bad user input: a missing or corrupt file, wrong label values, mismatched shapes, an existing output."""

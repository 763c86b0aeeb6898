"""Errors raised by the data layer."""


class DataNotFoundError(FileNotFoundError):
    """A data set's files are in none of the places searched.

    The message names every folder looked at and how to install the data.
    """


class DataFormatError(ValueError):
    """A data file exists but is truncated, corrupt or not what it claims to be."""

"""`python -m img2num`: the command-line interface."""

from img2num.cli import entry

entry()

"""`python -m img2num`: the command-line interface."""

import sys

from img2num.cli import main

sys.exit(main())

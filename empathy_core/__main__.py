"""``python -m empathy_core``: see empathy_core/cli.py for the commands."""

import sys

from .cli import main

sys.exit(main())

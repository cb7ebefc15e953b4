"""``python -m pinclient fetch …`` is the same as ``pinclient fetch …``."""

import sys

from .cli import main

sys.exit(main())

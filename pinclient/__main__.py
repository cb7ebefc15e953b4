"""``python -m pinclient fetch …`` is the same as ``pinclient fetch …``."""

import sys

from ._cli.main import main

sys.exit(main())

"""Entry point for ``python -m recsys_lhuc``."""
import sys

from .cli import main

sys.exit(main())

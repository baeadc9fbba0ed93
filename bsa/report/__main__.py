"""``python -m bsa.report``: see ``bsa.report.cli``."""

import sys

from bsa.report.cli import main

sys.exit(main())

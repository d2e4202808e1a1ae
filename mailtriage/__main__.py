"""``python -m mailtriage``: the same as the ``mailtriage`` console script."""

import sys

from mailtriage.cli import main

sys.exit(main())

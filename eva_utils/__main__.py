"""``python -m eva_utils`` is the ``eva-utils`` command."""

import sys

from .cli import main

sys.exit(main())

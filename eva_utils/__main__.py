"""``python -m eva_utils`` is the ``eva-utils`` command."""

import sys

from eva_utils.apps.cli import main

sys.exit(main())

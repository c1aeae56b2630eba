"""``python -m hub.catalog check [DIR]``."""

import sys

from hub.catalog import main

sys.exit(main())

"""`python -m selfplay.sweep`: see `selfplay.sweep`."""

import sys

from selfplay.sweep import main

sys.exit(main())

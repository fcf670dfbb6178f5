"""`python -m selfplay.arena`: see `selfplay.arena.cli`."""

import sys

from selfplay.arena.cli import main

sys.exit(main())

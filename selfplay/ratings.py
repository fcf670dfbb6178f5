"""`python -m selfplay.ratings`: the league table of votes files.

The command keeps its name; its code is `selfplay.arena.ratings`."""

import sys

from selfplay.arena.ratings import main

if __name__ == "__main__":
    sys.exit(main())

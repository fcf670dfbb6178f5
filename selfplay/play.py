"""`python -m selfplay.play`: play against any player.

The command keeps its name; its code is `selfplay.arena.play`."""

import sys

from selfplay.arena.play import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m selfplay.imitate`: imitation of games from transcripts.

The command keeps its name; its code is `selfplay.games.imitate`."""

import sys

from selfplay.games.imitate import main

if __name__ == "__main__":
    sys.exit(main())

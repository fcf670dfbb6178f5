"""`python -m selfplay.transcripts`: expert transcripts, generated or checked.

The command keeps its name; its code is `selfplay.core.transcripts`."""

import sys

from selfplay.core.transcripts import main

if __name__ == "__main__":
    sys.exit(main())

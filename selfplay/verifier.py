"""`python -m selfplay.verifier`: train and measure a verifier from files.

The command keeps its name; its code is `selfplay.text.verifier`."""

import sys

from selfplay.text.verifier import main

if __name__ == "__main__":
    sys.exit(main())

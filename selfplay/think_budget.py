"""`python -m selfplay.think_budget`: accuracy against the thinking budget.

The command keeps its name; its code is `selfplay.text.think_budget`."""

import sys

from selfplay.text.think_budget import main

if __name__ == "__main__":
    sys.exit(main())

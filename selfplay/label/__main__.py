import sys

from selfplay.label.cli import main

sys.exit(main())

"""`python -m twostream.launch ...` runs the same command line as `twostream ...`."""

import sys

from twostream.launch.cli import main

sys.exit(main())

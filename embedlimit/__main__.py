"""Run the `embedlimit` command as `python -m embedlimit`."""

import sys

from embedlimit._cli import main

sys.exit(main())

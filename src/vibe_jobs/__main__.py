"""`python -m vibe_jobs` runs the command line."""

import sys

from vibe_jobs.cli import main

sys.exit(main())

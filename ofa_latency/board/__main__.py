"""``python -m ofa_latency.board``: the board's command line (:mod:`ofa_latency.cli.board`)."""

import sys

from ..cli.board import main

sys.exit(main())

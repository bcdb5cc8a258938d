"""``python -m spikeacc.app``: the same as the ``spikeacc`` command."""

import sys

from spikeacc.app.cli import main

sys.exit(main())

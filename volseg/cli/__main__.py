"""``python -m volseg.cli``: the ``volseg`` command."""

import sys

from .parser import main

sys.exit(main())

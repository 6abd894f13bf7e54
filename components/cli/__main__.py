"""``python -m components.cli``: the same as the ``loopline`` console script."""

import sys

from components.cli.main import main

sys.exit(main())

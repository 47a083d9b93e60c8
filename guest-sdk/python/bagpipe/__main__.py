"""`python -m bagpipe` is `python -m bagpipe.build`."""

import sys

from bagpipe.build import main

sys.exit(main())

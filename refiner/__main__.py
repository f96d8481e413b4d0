"""`python -m refiner`: the same entry point as the `refiner` command."""

import sys

from .start import main

sys.exit(main())

"""`python -m refiner`: the same entry point as the `refiner` command."""

from .start import main

main()

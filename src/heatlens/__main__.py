"""`python -m heatlens` runs the command line."""

from heatlens.cli import main

main()

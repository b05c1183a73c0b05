"""``python -m counterfeed``."""

from counterfeed.cli import main

main()

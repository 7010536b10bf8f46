"""``python -m senland_geo`` runs the CLI."""

from senland_geo.cli import main

main()

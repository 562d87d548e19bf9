"""``python -m sparsec`` runs the command line."""
from .cli import main

main(prog_name="sparsec")

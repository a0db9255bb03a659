"""The `autorec` subcommands, one module each (see `autorec.cli`)."""

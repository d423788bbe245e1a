"""One module per ``vipe-dagster`` subcommand (see ``vipe_dagster.cli``)."""

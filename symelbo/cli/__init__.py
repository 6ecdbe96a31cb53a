"""The command line (``symelbo``): a thin layer over the core, the readers and the models."""

from symelbo.cli.commands import main

__all__ = ["main"]

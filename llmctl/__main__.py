"""Entry point for `python -m llmctl`."""

from llmctl.cli import main

main()

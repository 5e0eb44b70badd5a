"""`python -m agentkit.cli`, as the `agentkit` command."""

from agentkit.cli import main

main()

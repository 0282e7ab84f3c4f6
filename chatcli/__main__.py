"""`python -m chatcli` runs the same entry point as the console script."""

from chatcli.cli import main

raise SystemExit(main())

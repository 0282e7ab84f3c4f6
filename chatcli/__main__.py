"""`python -m chatcli` runs the same entry point as the console script."""

from chatcli.cli.main import main

raise SystemExit(main())

"""`python -m tasker` is the `tasker` command."""

from tasker.cli.main import main

raise SystemExit(main())

"""`python -m app` is the same as the `cronlock` command."""

from app.cli import main

raise SystemExit(main())

from petwatch.cli import main

raise SystemExit(main())

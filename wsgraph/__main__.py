from wsgraph.cli.main import main

raise SystemExit(main())

from toka.cli.main import main

raise SystemExit(main())

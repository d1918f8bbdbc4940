from edge_sched.cli import main

raise SystemExit(main())

from meterbench.cli import main

raise SystemExit(main())

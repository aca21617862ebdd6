from vqfr.cli import main

raise SystemExit(main())

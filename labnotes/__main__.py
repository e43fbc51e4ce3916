from labnotes.cli import main

raise SystemExit(main())

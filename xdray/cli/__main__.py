from xdray.cli import main

raise SystemExit(main())

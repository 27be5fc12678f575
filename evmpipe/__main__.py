import sys

from evmpipe.cli import main

sys.exit(main())

"""``python -m evmpipe.blocktest``: the ``evmpipe blocktest`` subcommand on its own."""

import sys

from evmpipe.blocktest import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m segloop.platform.cli` (used by torchrun) runs the command line."""
import sys

from segloop.platform.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

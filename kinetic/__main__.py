import sys

from kinetic.cli import main

if __name__ == "__main__":  # (not when a helper process started with "spawn" imports this module)
    sys.exit(main())

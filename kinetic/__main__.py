import sys

from kinetic.cli import main

sys.exit(main())

import sys

from autorec.cli import main

sys.exit(main())

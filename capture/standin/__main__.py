import sys

from capture.standin.cli import main

sys.exit(main())

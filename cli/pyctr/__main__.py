import sys

from pycontainerd.cli.pyctr.app import main

sys.exit(main())

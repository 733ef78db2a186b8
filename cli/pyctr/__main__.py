import sys

from pycontainerd.cmd.pyctr.app import main

sys.exit(main())

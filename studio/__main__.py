"""python -m studio ckpt=<file> [device=cpu] [port=7860] [host=127.0.0.1]"""

import sys

from studio.app import main

sys.exit(main())

"""Entry point of ``python -m gpt_oss_native``."""

import sys

from .cli import main

sys.exit(main())

"""``python -m sae_training``."""

import sys

from sae_training.cli import main

if __name__ == "__main__":
    sys.exit(main())

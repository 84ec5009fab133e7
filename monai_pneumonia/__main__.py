"""``python -m monai_pneumonia``: the same command line as the ``monai-pneumonia`` script."""

import sys

from monai_pneumonia.cli import main

if __name__ == "__main__":
    sys.exit(main())

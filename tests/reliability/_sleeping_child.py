"""A stand-in for ``monai_pneumonia/io/_decode_child.py`` that never answers (test_isolation's hung decoder)."""

import time

time.sleep(600)

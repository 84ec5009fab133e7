"""Measure the "no picture" rule of ``monai_pneumonia/io/content.py`` on real films.

Loads a random sample of files (every one must load: the rule may not refuse a real radiograph) and prints the
smallest, 1st-percentile and median central-99 % spread of the displayed images, computed exactly as the check
does::

    python scripts/measure_picture_rule.py DATA_DIR [--count 600] [--seed 0] [extra files ...]

The figures in ``io/content.py`` came from the Kermany chest X-ray set (``chest_xray/*/*/*.jpeg``), 600 films,
seed 0, plus the four DICOM files of ``samples/``.
"""

from __future__ import annotations

import argparse
import glob
import os
import random

import numpy as np


def main(argv: list[str] | None = None) -> None:
    """Print the spread statistics."""
    from monai_pneumonia.io import load_xray
    from monai_pneumonia.io.content import _spread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", help="a folder of JPEG films (searched as */*/*.jpeg)")
    parser.add_argument("extra", nargs="*", help="more files to include (e.g. samples/*/*.dcm)")
    parser.add_argument("--count", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    files = sorted(glob.glob(os.path.join(args.data_dir, "*", "*", "*.jpeg")))
    random.Random(args.seed).shuffle(files)
    files = files[: args.count] + list(args.extra)
    spreads = sorted(_spread(load_xray(path)[0]) for path in files)
    first, median = np.percentile(spreads, (1, 50))
    print(f"{len(spreads)} films loaded; central-99 % spread: min {spreads[0]:.3f}, 1st percentile {first:.3f}, "
          f"median {median:.3f}")


if __name__ == "__main__":
    main()

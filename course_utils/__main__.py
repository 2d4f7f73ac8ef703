"""``python -m course_utils``: check a machine before class: versions, device, data folder and datasets."""

from __future__ import annotations

import argparse

from . import config
from .data import dataset_status
from .utils import environment_report, get_device


def main(argv: list[str] | None = None) -> int:
    """Print the environment report and which datasets are present.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0.
    """
    parser = argparse.ArgumentParser(prog="python -m course_utils", description=__doc__)
    parser.parse_args(argv)
    environment_report()
    get_device()
    print(f"\nDatasets in {config.data_dir()}:")
    for name, present in dataset_status().items():
        status = "present" if present else "missing (downloaded on first use; needs network)"
        print(f"  {name:<13} {status}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

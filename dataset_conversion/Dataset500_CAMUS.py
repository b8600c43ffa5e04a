"""Convert CAMUS (any of its published layouts) to an nnU-Net raw dataset, in nnU-Net's one-script-per-dataset
style: `python dataset_conversion/Dataset500_CAMUS.py ~/data/CAMUS_public -d 500 --split paper`.

The conversion is `nnunet_lightweight.conversion.camus.convert_camus`; this script takes the same options and gives
the same messages and exit codes as `lightecho convert-camus`, whose parser it uses.
"""

import sys

from nnunet_lightweight.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert-camus", *sys.argv[1:]]))

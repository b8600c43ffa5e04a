"""Convert CSV-listed frames (HUNT4-style exports, or any data of your own) to an nnU-Net raw dataset:
`python dataset_conversion/Dataset_generic_csv.py frames.csv -d 510 --name HUNT4`.

The conversion is `nnunet_lightweight.conversion.generic.convert_generic`; this script takes the same options and
gives the same messages and exit codes as `lightecho convert-generic`, whose parser it uses.
"""

import sys

from nnunet_lightweight.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert-generic", *sys.argv[1:]]))

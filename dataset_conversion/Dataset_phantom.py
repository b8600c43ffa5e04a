"""Generate the synthetic echo phantom (CAMUS layout, analytically known volumes); convert it like CAMUS:
`python dataset_conversion/Dataset_phantom.py /tmp/phantom -n 40 && python dataset_conversion/Dataset500_CAMUS.py
/tmp/phantom -d 501`.

The generator is `nnunet_lightweight.conversion.phantom.generate_phantom`; this script takes the same options and
gives the same messages and exit codes as `lightecho phantom`, whose parser it uses.
"""

import sys

from nnunet_lightweight.cli import main

if __name__ == "__main__":
    sys.exit(main(["phantom", *sys.argv[1:]]))

"""Package a trained LightEcho model folder as the model shipped inside the package.

Example (after `nnUNetv2_train 500 2d 0 -tr nnUNetTrainerLightEcho_CPU1h_Batch8 -device cpu` on the 224x224 CAMUS
copy converted with `--split official`):
    python scripts/package_shipped_model.py \
        -m $nnUNet_results/Dataset500_CAMUS/nnUNetTrainerLightEcho_CPU1h_Batch8__nnUNetPlans__2d --card MODEL_CARD.md
It writes nnunet_lightweight/pretrained/Dataset500_CAMUS/<model folder>/ (refusing to replace an existing one):
nnU-Net's model files, fold_0's checkpoint with the network weights only, its learning curve and validation
summary, input_convention.json (the sector resized to 224x224) and the model card.
"""

import argparse
from pathlib import Path

from nnunet_lightweight.inference.input_convention import InputConvention
from nnunet_lightweight.pretrained import SHIPPED_MODEL, package_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-m", "--model", type=Path, required=True, help="trained nnU-Net model folder")
    parser.add_argument("--card", type=Path, required=True, help="the model card (Markdown) to ship with it")
    parser.add_argument(
        "--frame-size",
        type=int,
        nargs=2,
        default=(224, 224),
        metavar=("ROWS", "COLS"),
        help="the training frames' size: the input convention (default 224 224)",
    )
    args = parser.parse_args()
    SHIPPED_MODEL.parent.mkdir(parents=True, exist_ok=True)
    print(package_model(args.model, SHIPPED_MODEL, InputConvention(tuple(args.frame_size)), ["0"], args.card))


if __name__ == "__main__":
    main()

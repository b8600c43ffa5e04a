"""Trainer variants of the ablation study (paper Sec. II-C, Tables V and VI), one small class per file.

Grouped by what they change, like nnU-Net's own variants. The U-Net 1 ladder (Table VI) is built by
inheritance, each step adding one component to the previous one:

    baseline/            nnUNetTrainerLightEcho_UNet1Baseline        no norm, ReLU, no augmentation, Dice, no DS
    normalization/       nnUNetTrainerLightEcho_UNet1_BN              + BatchNorm   (alternative: _UNet1_IN)
    activation/          nnUNetTrainerLightEcho_UNet1_BN_Mish         + Mish        (alternatives: _LeakyReLU, _GELU)
    augmentation/        nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine  + affine      (alternatives: _AugI ... _AugV)
    loss/                nnUNetTrainerLightEcho_UNet1_BN_Mish_Affine_DiceCE  + mean(Dice, CE)
    (deep supervision)   nnUNetTrainerLightEcho itself               + DS, the final model (alternative: _UNet1_BN_DS)

The size (network_size/, with the lr_schedule/ plateau schedule of Table III) and architecture
(network_architecture/) variants change one thing of the final model; nnunet_default/ holds the nnU-Net-side
ablations. `nnunet_lightweight.workflows.ablation_variants` lists them, `workflows.ablation` runs the study.
"""

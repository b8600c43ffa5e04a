"""The U-Net 1 baseline of the paper (Table I): the first row of the ablation ladder."""

"""Planning: LightEcho plans next to nnU-Net's default plans, on the same preprocessed data."""

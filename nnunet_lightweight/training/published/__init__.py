"""Published echocardiography models as nnU-Net trainer variants, for comparison with LightEcho on the same
preprocessing, splits and evaluation."""

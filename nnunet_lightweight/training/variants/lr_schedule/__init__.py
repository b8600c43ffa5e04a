"""Learning-rate schedule variants: ReduceLROnPlateau, which the paper uses for the other network sizes."""

"""Loss variants: mean(Dice, CE) instead of Dice alone (kept by the paper)."""

"""Entry module for nnU-Net's external-trainer lookup: exposes every trainer of nnunet_lightweight.

The classes come from their canonical modules, so a trainer found by nnU-Net is the same object as one
imported directly.
"""

from nnunet_lightweight.training import discover_trainers

globals().update(discover_trainers())

"""Largest connected component per label on a batch of label maps, in torch (runs on the GPU).

Same result as nnU-Net's `remove_all_but_largest_component_from_segmentation` applied label by label (8-connected
in 2D; every component of the largest size is kept on a tie), but for a whole batch at once and on the device the
network ran on, so the masks never leave the GPU between argmax and CCA.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

# Propagation rounds between two convergence checks: a check synchronises with the GPU.
_ROUNDS_PER_CHECK = 4


def component_ids(masks: torch.Tensor) -> torch.Tensor:
    """An id per 8-connected component of each (N, H, W) boolean mask: the largest 1-based flat pixel index in it.

    Label propagation (every pixel takes the largest id in its 3x3 neighbourhood within the mask) with pointer
    jumping (a pixel takes the id of the pixel its id points to), which shortens long chains to about log steps.
    Ids are float32 (max-pooling needs floating point), exact up to 2**24 pixels per image.
    """
    n, height, width = masks.shape
    if height * width >= 2**24:
        raise ValueError(f"frames of {height}x{width} pixels exceed the exact float32 id range")
    pixel_ids = torch.arange(1, height * width + 1, device=masks.device, dtype=torch.float32)
    ids = torch.where(masks, pixel_ids.view(1, height, width), torch.zeros((), device=masks.device))
    while True:
        before = ids
        for _ in range(_ROUNDS_PER_CHECK):
            ids = F.max_pool2d(ids[:, None], 3, 1, 1)[:, 0] * masks
            flat = ids.view(n, -1)
            # Pointer jumping: the pixel an id names is in the same component and holds an id at least as large.
            pointed = torch.gather(flat, 1, (flat.long() - 1).clamp_min(0))
            ids = torch.where(masks, pointed.view(n, height, width), ids)
        if torch.equal(ids, before):
            return ids


def keep_largest_component(segmentation: torch.Tensor, labels: Sequence[int], background: int = 0) -> torch.Tensor:
    """(B, H, W) integer label maps with every label reduced to its largest 8-connected component(s)."""
    if segmentation.ndim != 3:
        raise ValueError(f"expected (batch, rows, cols) label maps, got shape {tuple(segmentation.shape)}")
    if not labels or segmentation.numel() == 0:
        return segmentation
    batch, height, width = segmentation.shape
    label_values = torch.as_tensor(list(labels), device=segmentation.device, dtype=segmentation.dtype)
    masks = (segmentation[:, None] == label_values.view(1, -1, 1, 1)).view(-1, height, width)
    ids = component_ids(masks).view(masks.shape[0], -1).long()
    # Component sizes: count pixels per (mask, id); id 0 is the background of each mask.
    offsets = torch.arange(masks.shape[0], device=ids.device).view(-1, 1) * (height * width + 1)
    sizes = torch.bincount((ids + offsets).view(-1), minlength=masks.shape[0] * (height * width + 1))
    pixel_sizes = sizes[ids + offsets] * masks.view(masks.shape[0], -1)
    largest = pixel_sizes.amax(dim=1, keepdim=True)
    removed = masks.view(masks.shape[0], -1) & (pixel_sizes < largest)
    removed = removed.view(batch, len(labels), height, width).any(dim=1)
    return torch.where(removed, torch.full_like(segmentation, background), segmentation)

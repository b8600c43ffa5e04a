"""Clinical measurements from LV masks: Simpson volumes, ejection fraction, agreement statistics, cine loops.

- `volumes`: mitral plane, apex and disk diameters of one apical view; biplane and single-plane volumes.
- `ejection_fraction`: per-patient EDV/ESV/EF from folders of masks (`lightecho ef`).
- `agreement`: Pearson r, bias, limits of agreement, MAE and Bland-Altman/scatter plots.
- `cine`: area and volume curves of whole sequences, automatic ED/ES frames (`lightecho cine`).
"""

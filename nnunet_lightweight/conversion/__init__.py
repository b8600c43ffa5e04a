"""Conversion to nnU-Net raw datasets: the dataset builder and patient-level splits shared by the CAMUS, generic
(CSV-listed, e.g. HUNT4) and synthetic-phantom converters, and overlay PNGs of converted frames."""

"""Dataset conversion to nnU-Net raw datasets: CAMUS (`camus`), CSV-listed data such as HUNT4 (`generic`), the
synthetic echo phantom (`phantom`), shared validation/splits/atomic writing (`common`) and overlay PNGs (`overlay`)."""

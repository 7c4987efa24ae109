"""kernels: see ../shared/DESIGN.md."""

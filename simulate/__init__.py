"""simulate: see ../shared/DESIGN.md."""

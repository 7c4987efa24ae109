"""validate: see ../shared/DESIGN.md."""

"""autocall.media layer (see DESIGN.md §2)."""

"""autocall.audio layer (see DESIGN.md §2)."""

"""autocall.dialogue layer (see DESIGN.md §2)."""

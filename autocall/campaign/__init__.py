"""autocall.campaign layer (see DESIGN.md §2)."""

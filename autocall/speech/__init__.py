"""autocall.speech layer (see DESIGN.md §2)."""

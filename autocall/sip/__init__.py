"""autocall.sip layer (see DESIGN.md §2)."""

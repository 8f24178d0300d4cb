"""autocall.telephony layer (see DESIGN.md §2)."""

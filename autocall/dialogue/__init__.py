"""autocall.dialogue: prompt trees — what to say and how to react (DESIGN.md §2).

- :mod:`.schema`   the tree format (pydantic) and its JSON Schema
- :mod:`.loader`   YAML → Tree, every problem as file:line:column
- :mod:`.validate` dangling targets, silent loops, menus with no way out, audio, fields
- :mod:`.engine`   the sans-I/O state machine a driver feeds events to (contract inside)
- :mod:`.simulate` a driver without a phone; :mod:`.testing` scripted cases
- :mod:`.graph`    Mermaid, DOT, SVG and PNG pictures
"""

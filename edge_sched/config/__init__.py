"""Implementation of `edge_sched.settings`; import the public API from there.

Split by role: `_kinds` (value syntax), `_keys` (the key table, single source of truth),
`_model` (the frozen settings tree), `_loader` (sources and precedence), `_render` (text output).
"""

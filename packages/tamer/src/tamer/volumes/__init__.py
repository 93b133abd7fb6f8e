"""Volumes where you want them: place, move, back up, restore, adopt, run.

Each operation is a plan function (reads, checks, returns a value; changes
nothing) and an apply step (acts on exactly that plan). Multi-step changes
(move, adopt) are `tamer.operation.Operation`s: journaled steps, one lock,
rollback from any step. `guard` holds the invariants checked at the point of
action (no shared folder deleted or written, no live copy, what needs root).
Volume data is read and written on this host directly, so these commands run
on the engine's own host.
"""

"""Volumes where you want them: place, move, back up, restore, adopt, run.

Each operation is a plan function (reads, checks, returns a value; changes
nothing) and an apply step (acts on exactly that plan). Volume data is read and
written on this host directly, so these commands run on the engine's own host.
"""

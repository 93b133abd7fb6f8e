"""`tamer fleet`: run tamer on many hosts over OpenSSH and add up what each one's `--json` envelope says.

hosts (the hosts file -> Host values) and aggregate (replies -> per-host reports, rows, totals) are pure;
ssh runs the remote commands (the only part with effects). Nothing new goes over the wire: each host runs
its own tamer, which reads its own engine, volumes and logs where they are.
"""

"""faithful as the referee: a logprob audit and a cross-engine sampler conformance matrix.

- :mod:`faithful.referee.audit`: is an engine's reported logprob ``log q`` of the distribution it
  sampled from, of the raw one, or neither?
- :mod:`faithful.referee.conformance`: identical logits through each engine's own processor chain and
  sampler, compared with faithful's exact q (the canonical definition) and the engine's own.
"""

from __future__ import annotations

from faithful.referee.audit import AuditInputError, LogprobAudit, RecordAudit, audit_logprobs, audit_records

__all__ = ["AuditInputError", "LogprobAudit", "RecordAudit", "audit_logprobs", "audit_records"]

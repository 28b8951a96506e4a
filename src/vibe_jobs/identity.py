"""Who is asking: the principal of a request and the one rule of what it may see (`Viewer.sees`).

Every job records the principal that created it. A surface (tool, resource, subscription, task) asks the
manager on behalf of a `Viewer`; the manager answers a job the viewer may not see exactly as an unknown
id (`JobNotFound`). stdio and unauthenticated loopback HTTP have one local principal; scope `admin`
sees every job. Code that passes no viewer (the library, the engine, the operator's `vibe-jobs jobs`)
sees everything.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_PRINCIPAL = "local"  # stdio, unauthenticated loopback HTTP, the library
ADMIN_SCOPE = "admin"
NOBODY = "\x00nobody"  # an authenticated server asked without a token: a principal no token can name


@dataclass(frozen=True, slots=True)
class Viewer:
    """A caller: its principal, and whether it holds scope `admin` (sees and cancels every job)."""

    principal: str
    admin: bool = False

    def sees(self, principal: str | None) -> bool:
        """May this viewer see a job created by `principal`? (Jobs from before principals were
        recorded belong to the local principal.)"""
        return self.admin or (principal or LOCAL_PRINCIPAL) == self.principal

    @property
    def scope(self) -> str | None:
        """The principal whose jobs a list or count is limited to (None: every job)."""
        return None if self.admin else self.principal


LOCAL = Viewer(LOCAL_PRINCIPAL)

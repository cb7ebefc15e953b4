"""Revocation checking (OCSP, CRL) for the pinned transport (private).

``verify`` is pure: build OCSP requests, verify responses and CRLs, with no I/O. ``checker`` fetches
and caches them (``RevocationChecker``). ``hook`` runs a checker after each accepted pin check,
before the request (``RevocationHook``). Nothing is imported here: with revocation off, a fetch
never loads ``verify`` or ``checker``.
"""

"""The download subsystem behind :func:`pinclient.fetch_update` (private; import from ``pinclient``).

``options`` (FetchOptions, pure) → ``fetch`` (the call and its attempts) → ``http`` (requests,
redirects, error conversion) and ``stream`` (the body loop: ``body``, ``pipeline``, ``partfile``),
with ``job`` (shared state), ``resume``, ``retry``, ``rate``, ``lock`` and ``signature`` beside
them. Nothing is imported here, so that importing ``options`` (the CLI does) stays cheap.
"""

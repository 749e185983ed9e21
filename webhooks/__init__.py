"""A self-hosted webhook hub: publish events out, receive provider webhooks in.

Host applications that embed the hub call :func:`publish` exactly as the HTTP
API does. It is imported lazily so that the pure modules (``signing``,
``filters``, ``providers``...) can be used without Flask or a database.
"""

__all__ = ["publish"]


def __getattr__(name):
    if name == "publish":
        from webhooks.publishing import publish

        return publish
    raise AttributeError(name)

"""The commands, each a ``main``: ``train``, ``evaluate``, ``predict``, ``export`` (Hydra apps)
and ``pipeline``. ``python -m qmimic.<command>`` and the ``qmimic-<command>`` console scripts
run them. Nothing in the library imports this package."""

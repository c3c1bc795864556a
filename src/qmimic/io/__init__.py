"""What a run reads and writes: checkpoints (:mod:`~qmimic.io.checkpoints`, the one reader and
writer of their format), ``results.json`` and other run files written atomically
(:mod:`~qmimic.io.results`), the record of the machine a run trained on
(:mod:`~qmimic.io.environment`), and the Lightning loggers, callbacks and dashboard images that
write them (:mod:`~qmimic.io.loggers`, :mod:`~qmimic.io.callbacks`,
:mod:`~qmimic.io.dashboard`). A library layer: it imports no orchestration and no command."""

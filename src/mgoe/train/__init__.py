"""Training: trainer, configs, metrics, run directories, the input pipeline.

``mgoe.train`` is also callable, so the top-level API reads like the CLI::

    import mgoe
    metrics = mgoe.train("data/tmall", "graphs/tmall", output="runs/tmall-mgoe")

(the package module's class gets a ``__call__`` that forwards to :func:`mgoe.train.api.train`;
``mgoe.train.api``, ``mgoe.train.trainer`` ... stay ordinary submodules).
"""

from __future__ import annotations

import sys
import types


class _CallableTrainModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        from mgoe.train.api import train

        return train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainModule

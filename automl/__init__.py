"""automl: plugin-based AutoML for fine-tuning pretrained models on industry tasks.

Plugins import :data:`hookimpl` from here and target :data:`API_VERSION`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from automl.results.predict import ExportedModel

__version__ = "0.1.0"

#: Version of the plugin API (hooks, Task and Backbone interfaces). A plugin module declares
#: the API it targets with ``automl_api_version = "1"``; a plugin that targets a different
#: major version is refused with a clear message instead of failing mid-run.
API_VERSION = "1"

hookimpl = pluggy.HookimplMarker("automl")


def load_model(path: str, *, device: str = "cpu") -> ExportedModel:
    """Load a model ``automl run`` exported (a run's ``best/``, or the run directory).

    The result has ``.predict(frame)`` (the rows of a pandas DataFrame with prediction and
    score columns added, as ``automl predict`` writes them) and ``.outputs(frame)`` (the
    raw model outputs per row, a numpy array). Works for every kind of export: text-only
    models and models with table-column features (``fused``)."""
    from automl.results.predict import load_exported

    return load_exported(path, device=device)


__all__ = ["API_VERSION", "__version__", "hookimpl", "load_model"]

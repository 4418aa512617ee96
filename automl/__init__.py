"""automl: plugin-based AutoML for fine-tuning pretrained models on industry tasks.

Plugins import :data:`hookimpl` from here and target :data:`API_VERSION`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from automl.hookspecs import API_VERSION, hookimpl

if TYPE_CHECKING:
    from automl.results.predict import ExportedModel

__version__ = "0.1.0"


def load_model(path: str, **options: object) -> object:
    """Load a model automl exported (a run's ``best/``, or its ``baseline/``): a fine-tuned
    model, a saved baseline or an ensemble. The result has ``.predict(frame)`` (the rows
    with prediction columns added) and ``.outputs(frame)`` (raw outputs per row).
    ``progress=True`` shows transformers' "Loading weights" bar (quiet by default)."""
    from automl.results.predict import load_model as _load  # torch: plugins import this package for hookimpl

    return _load(path, **options)  # type: ignore[arg-type]


__all__ = ["API_VERSION", "__version__", "hookimpl", "load_model"]

"""HTTP scoring service for an exported model (``automl serve MODEL_DIR``; ``automl[serve]``).

Any model directory ``automl predict`` reads (a fine-tuned, fused or LoRA export, the
baseline, an ensemble, an ONNX export) is loaded once with :func:`automl.load_model` and
served by FastAPI on uvicorn:

* ``POST /predict`` with ``{"rows": [{column: value, ...}, ...]}`` (or the bare list) ->
  ``{"predictions": [...]}``, one object per row in the order sent, with the columns
  ``automl predict`` adds (the label, the scores and, for a thresholded task such as
  fraud-detection, the tuned threshold's decision);
* ``GET /health``; ``GET /metadata`` (task, input columns and their types, labels,
  metrics, versions, the batching settings); the OpenAPI page at ``/docs``.

**Dynamic batching.** Requests are validated as they arrive, then queued; one scoring loop
takes the first queued request, waits at most ``max_wait_ms`` for more until
``max_batch_size`` rows are together, and scores them in one call of the model (in a
worker thread, so the event loop keeps accepting requests meanwhile). ``max_batch_size 1``
scores every request alone. A batch that the model refuses is scored again request by
request, so one bad request never fails its neighbours.

**Why FastAPI + uvicorn rather than LitServe** (which has ``max_batch_size`` and
``batch_timeout`` built in): LitServe runs the model in separate inference processes fed
through queues, which on a small CPU box costs a copy of the model and the inter-process
hops per worker; its request decoding happens inside the batched worker, so one
malformed row must be caught there; and a body-size limit and extra routes go through its
underlying FastAPI app anyway. With FastAPI directly, validation (4xx with a one-line
reason), the size limit, ``/metadata`` and the OpenAPI schema of the model's own columns
are ordinary code, and batching is the small asyncio queue below.

(No ``from __future__ import annotations`` here: FastAPI reads the endpoints' parameter
types, which are imported inside :func:`create_app`, from their annotations.)
"""

import asyncio
import contextlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from automl import __version__
from automl.errors import UserError, require_modules
from automl.results.predict import load_model, predict_frame, read_meta

INSTALL = 'pip install "automl[serve]"'
#: Environment variable carrying the settings to each uvicorn worker process (``--workers``).
SETTINGS_ENV = "AUTOML_SERVE_SETTINGS"
#: How long an idle keep-alive connection stays open (uvicorn's default is 5 s). Longer than
#: the idle timeout of the usual load balancers and clients (60 s), so the server is not the
#: side that closes a connection just as a client sends its next request on it.
KEEP_ALIVE_S = 75
#: Input column types in ``/metadata`` and the OpenAPI schema.
NUMBER, CATEGORY, STRING, ANY = "number", "category", "string", "any"


def require_serve() -> None:
    """One line naming the extra when FastAPI or uvicorn is missing."""
    require_modules(("fastapi", "uvicorn"), install=INSTALL, field="automl serve")


@dataclass(frozen=True)
class Settings:
    """What ``automl serve`` takes besides host and port."""

    model_dir: str
    #: Rows scored together at most (1: no batching).
    max_batch_size: int = 32
    #: How long the first queued request waits for others to join its batch.
    max_wait_ms: float = 5.0
    #: Largest request body accepted (bytes); larger ones get 413.
    max_body_bytes: int = 1_000_000
    device: str = "auto"

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(**json.loads(os.environ[SETTINGS_ENV]))


class BadRequest(Exception):
    """A request the service refuses: an HTTP status and a one-line reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# --------------------------------------------------------------------------- the model


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _feature_pipeline(model: Any) -> Any:
    """The fitted table-feature pipeline of *model* or of one of its members, if any."""
    for candidate in [model, *getattr(model, "members", [])]:
        task = getattr(candidate, "task", None)
        features = getattr(task, "features", None)
        if features is not None:
            return features
    return None


def input_columns(model: Any) -> list[dict[str, str]]:
    """The columns a row must have, with their types: ``number`` and ``category`` for table
    features, ``string`` for a text column, ``any`` (a JSON scalar) where the export does
    not say (e.g. a baseline alone)."""
    meta = model.meta
    data = meta.get("data") or {}
    calibration = meta.get("calibration") or {}
    features = _feature_pipeline(model)
    names = list(calibration.get("columns") or [])
    if not names:
        names = [str(data.get("text_column") or "text")] + list(data.get("feature_columns") or [])
    numbers = {c.name for c in features.numeric} if features is not None else set()
    categories = {c.name for c in features.categorical} if features is not None else set()
    typed = features is not None or not calibration.get("columns")
    columns = []
    for name in dict.fromkeys(names):
        kind = NUMBER if name in numbers else CATEGORY if name in categories else STRING if typed else ANY
        columns.append({"name": name, "type": kind})
    return columns


_JSON_TYPES = {NUMBER: {"type": ["number", "null"]}, STRING: {"type": ["string", "null"]}}


class Scorer:
    """An exported model with what the service needs around it: the input columns, the
    checks of a request's rows and the prediction columns of scored rows."""

    def __init__(self, model_dir: str | Path, device: str = "auto") -> None:
        self.model = load_model(model_dir, device=device)
        self.meta: dict[str, Any] = self.model.meta
        self.columns = input_columns(self.model)
        self.label_column = (self.meta.get("data") or {}).get("label_column")

    def metadata(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "task": meta.get("task"),
            "kind": meta.get("kind") or "transformers",
            "format": meta.get("format") or "pytorch",
            "head": meta.get("head"),
            "columns": self.columns,
            "labels": meta.get("labels"),
            "objective": meta.get("objective"),
            "metrics": meta.get("metrics"),
            "threshold": (meta.get("calibration") or {}).get("threshold"),
            "trial": meta.get("trial"),
            "backbone": meta.get("backbone"),
            "automl_version": __version__,
            "exported_with": meta.get("automl_version"),
        }

    def row_schema(self) -> dict[str, Any]:
        """JSON schema of one row (for the OpenAPI page)."""
        props = {c["name"]: _JSON_TYPES.get(c["type"], {}) for c in self.columns}
        return {"type": "object", "properties": props, "required": [c["name"] for c in self.columns]}

    def parse(self, body: bytes) -> list[dict[str, Any]]:
        """The rows of a request body, checked: JSON, rows as objects, every input column
        present with a value of its type. Raises :class:`BadRequest`."""
        if not body.strip():
            raise BadRequest(400, 'empty request body; send {"rows": [{column: value, ...}, ...]}')
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(400, f"invalid JSON: {_one_line(exc)}") from None
        rows = payload.get("rows") if isinstance(payload, dict) else payload
        if not isinstance(rows, list):
            raise BadRequest(422, 'expected {"rows": [...]} or a list of rows')
        if not rows:
            raise BadRequest(422, "no rows to predict")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise BadRequest(422, f"row {i} is not an object of column: value")
            for column in self.columns:
                name, kind = column["name"], column["type"]
                if name not in row:
                    raise BadRequest(422, f"row {i} lacks column '{name}'")
                value = row[name]
                if not _fits(value, kind):
                    raise BadRequest(422, f"row {i}: column '{name}' expects a {kind}, got {json.dumps(value)[:60]}")
            # A model that names its input columns (e.g. fraud-detection's) takes exactly
            # those over HTTP: a field it does not know is more likely a typo than an id.
            # (`automl predict` on a file ignores extra columns, matched by name.)
            if (self.meta.get("calibration") or {}).get("columns"):
                known = {c["name"] for c in self.columns} | {self.label_column}
                extra = [k for k in row if k not in known]
                if extra:
                    raise BadRequest(422, f"row {i} has extra column(s) {', '.join(map(str, extra))}; "
                                          f"the model takes {', '.join(c['name'] for c in self.columns)}")
        if any(self.label_column in row for row in rows):  # a label sent along is not an input
            rows = [{k: v for k, v in row.items() if k != self.label_column} for row in rows]
        return rows

    def score(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The prediction columns ``automl predict`` adds, one dict per row."""
        import pandas as pd

        frame = pd.DataFrame(rows)
        predicted = predict_frame(self.model, frame, file="<request>")
        columns = [c for c in predicted.columns if c not in frame.columns]
        records = predicted[columns].to_dict(orient="records")
        return [{k: _plain(v) for k, v in r.items()} for r in records]


def _fits(value: Any, kind: str) -> bool:
    if value is None:
        return True
    if isinstance(value, dict | list):
        return False
    if kind == NUMBER:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == STRING:
        return isinstance(value, str)
    return True


def _plain(value: Any) -> Any:
    """A JSON value (numpy scalars to Python, NaN to null)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------- batching

#: A queued request: its rows and the future its predictions go to.
Item = tuple[list[dict[str, Any]], "asyncio.Future[list[dict[str, Any]]]"]


class Batcher:
    """Scores queued requests together: up to *max_batch_size* rows, the first one waiting
    at most *max_wait_ms* for the others. The model runs in one worker thread."""

    def __init__(self, scorer: Scorer, max_batch_size: int, max_wait_ms: float) -> None:
        self.scorer = scorer
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue: "asyncio.Queue[Item]" = asyncio.Queue()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automl-score")
        self.batches = 0
        self.rows = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        await self.queue.put((rows, future))
        return await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            rows = len(batch[0][0])
            deadline = loop.time() + self.max_wait
            while rows < self.max_batch_size:
                try:
                    item = self.queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(self.queue.get(), left)
                    except TimeoutError:
                        break
                batch.append(item)
                rows += len(item[0])
            await self._score(batch)

    async def _score(self, batch: "list[Item]") -> None:
        loop = asyncio.get_running_loop()
        batch = [(rows, future) for rows, future in batch if not future.done()]  # a client gone
        if not batch:
            return
        rows = [row for item_rows, _ in batch for row in item_rows]
        try:
            results = await loop.run_in_executor(self.executor, self.scorer.score, rows)
        except Exception as exc:
            if len(batch) > 1:  # find the request the model refuses; score the others
                for item in batch:
                    await self._score([item])
                return
            error = BadRequest(422, _one_line(exc)) if isinstance(exc, UserError) else exc
            _resolve(batch[0][1], error=error)
            return
        self.batches += 1
        self.rows += len(rows)
        start = 0
        for item_rows, future in batch:
            _resolve(future, result=results[start : start + len(item_rows)])
            start += len(item_rows)


def _resolve(future: asyncio.Future[Any], *, result: Any = None, error: BaseException | None = None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


# --------------------------------------------------------------------------- the app


def create_app(settings: Settings, scorer: Scorer | None = None) -> Any:
    """The FastAPI application serving *settings.model_dir* (loaded here unless given)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, Response

    scorer = scorer or Scorer(settings.model_dir, device=settings.device)
    state: dict[str, Batcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any):  # type: ignore[no-untyped-def]
        batcher = Batcher(scorer, settings.max_batch_size, settings.max_wait_ms)
        batcher.start()
        state["batcher"] = batcher
        try:
            yield
        finally:
            await batcher.stop()

    meta = scorer.metadata()
    app = FastAPI(
        title=f"automl: {meta['task']} ({meta['kind']})",
        version=__version__,
        description=f"Scores rows with the model exported to `{Path(settings.model_dir).resolve()}`.",
        lifespan=lifespan,
    )

    @app.exception_handler(BadRequest)
    async def bad_request(request: Request, exc: BadRequest) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=exc.status)

    @app.get("/health", summary="Whether the model is loaded and the service answers")
    async def health() -> dict[str, Any]:
        batcher = state.get("batcher")
        return {"status": "ok", "batches": batcher.batches if batcher else 0, "rows": batcher.rows if batcher else 0}

    @app.get("/metadata", summary="Task, input columns and their types, labels, metrics, versions")
    async def metadata() -> dict[str, Any]:
        return {
            **meta,
            "batching": {"max_batch_size": settings.max_batch_size, "max_wait_ms": settings.max_wait_ms},
            "max_body_bytes": settings.max_body_bytes,
        }

    example = {"rows": [{c["name"]: _example_value(c["type"]) for c in scorer.columns}]}
    body_schema = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "properties": {"rows": {"type": "array", "items": scorer.row_schema()}}, "required": ["rows"]},
                "example": example,
            }
        },
    }

    @app.post(
        "/predict",
        summary="Predict rows: labels, scores and the decision, in the order sent",
        openapi_extra={"requestBody": body_schema},
        responses={400: {"description": "empty body or invalid JSON"}, 413: {"description": "body over the size limit"}, 422: {"description": "a row lacks a column or has a value of the wrong type"}},
    )
    async def predict(request: Request) -> Response:
        body = await _read_body(request, settings.max_body_bytes)
        rows = scorer.parse(body)
        try:
            predictions = await state["batcher"].submit(rows)
        except BadRequest:
            raise
        except Exception as exc:  # the model failed on valid-looking rows: say why, stay up
            raise HTTPException(500, f"scoring failed: {_one_line(exc)}") from None
        return Response(json.dumps({"predictions": predictions}), media_type="application/json")

    return app


def _example_value(kind: str) -> Any:
    return 1.0 if kind == NUMBER else "a value" if kind in (CATEGORY, ANY) else "some text"


async def _read_body(request: Any, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it is over *limit* bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"request body of {declared} bytes is over the limit of {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def app_from_env() -> Any:
    """The app of one uvicorn worker process (``--workers N``): settings from the environment."""
    return create_app(Settings.from_env())


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, workers: int = 1, on_ready: Any = None) -> None:
    """Run the service until Ctrl-C. One worker loads the model here, before it listens;
    several are uvicorn worker processes, each with its own copy of the model."""
    require_serve()
    import uvicorn

    if workers > 1:
        read_meta(settings.model_dir)  # a bad directory fails in one line, before any worker starts
        os.environ[SETTINGS_ENV] = settings.to_env()
        if on_ready is not None:
            on_ready(f"http://{host}:{port}", workers)
        uvicorn.run(
            "automl.serve:app_from_env", factory=True, host=host, port=port, workers=workers, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S
        )
        return
    app = create_app(settings)
    if on_ready is not None:
        on_ready(f"http://{host}:{port}", workers)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_keep_alive=KEEP_ALIVE_S)

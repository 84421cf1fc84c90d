"""`xdray serve --model DIR`: the student behind Ray Serve.

`POST /predict` with {"text": "..."} returns what `xdray predict` prints for that line,
{"text", "entities": [...]} (a blank text has none); with {"texts": [...]} a list of them.
`GET /healthz` answers {"status": "ok", "model": ...}; `GET /docs` is the OpenAPI page (FastAPI
ingress; the models are in xdray.serve.api). Lines from concurrent requests are tagged together
(`@serve.batch`), so a replica runs one ONNX Runtime call for many users. Bad requests (not JSON,
wrong types, oversized) get a 4xx with {"error": ...}; nothing a client sends stops a replica.

`?batching=off` tags a request's lines on their own, skipping the batch queue: a switch for
`xdray bench serve`, which compares the two on the same deployment.

No `from __future__ import annotations` here: the replicas get the deployment class by value, and
FastAPI reads its handlers' annotations (`request: Request`) as objects, not names to look up.
"""

import asyncio
from dataclasses import dataclass
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.loader import build_checked
from xdray.serve.api import DEFAULT_MAX_CHARS, DEFAULT_MAX_TEXTS

APP_NAME = "xdray"


@dataclass(frozen=True)
class ServeConfig:
    model: str
    runtime: str = "auto"  # see serve.tagger.RUNTIMES
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1  # fixed replica count, unless max_replicas > replicas (autoscaling)
    max_replicas: int = 0
    replica_cpus: float = 1.0
    max_batch_size: int = 32
    batch_wait_ms: float = 5.0
    max_texts: int = DEFAULT_MAX_TEXTS  # per request
    max_chars: int = DEFAULT_MAX_CHARS  # per text

    def check(self) -> None:
        from xdray.serve.tagger import model_directory

        model_directory(self.model)  # an export, or a run directory with a recommended student
        if self.replicas < 1 or (self.max_replicas and self.max_replicas < self.replicas):
            raise XdrayError(f"--replicas {self.replicas} / --max-replicas {self.max_replicas}: expected "
                             "1 <= replicas <= max-replicas")
        if self.max_batch_size < 1 or self.batch_wait_ms < 0:
            raise XdrayError("--max-batch-size must be >= 1 and --batch-wait-ms >= 0")
        if self.max_texts < 1 or self.max_chars < 1:
            raise XdrayError(f"--max-texts {self.max_texts} / --max-chars {self.max_chars}: expected >= 1")


def _api(cfg: ServeConfig):
    """The FastAPI app the replicas serve: its routes are the deployment's methods below."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException  # FastAPI's and the router's own 404 / 405

    from xdray import __version__

    app = FastAPI(title="xdray tagger", version=__version__, description=(
        f"Named entities in raw text, from the distilled student in {cfg.model}. Each text gets what "
        f"`xdray predict` prints for that line. Limits: {cfg.max_texts} texts a request, "
        f"{cfg.max_chars} characters a text."))

    @app.exception_handler(HTTPException)
    async def _as_error(request: Request, err: HTTPException) -> JSONResponse:  # {"error": ...} everywhere
        hint = "; use POST /predict or GET /healthz (API: GET /docs)" if err.status_code in (404, 405) else ""
        return JSONResponse({"error": f"{err.detail}{hint}"}, status_code=err.status_code)

    return app


def _deployment(cfg: ServeConfig):
    from typing import Union

    from fastapi import Request
    from fastapi.responses import JSONResponse
    from ray import serve

    from xdray.serve.api import PREDICT_BODY, PREDICT_ERRORS, BadRequest, Health, Tagged, parse_request

    app = _api(cfg)

    @serve.deployment(name="tagger", ray_actor_options={"num_cpus": cfg.replica_cpus},
                      max_ongoing_requests=4 * cfg.max_batch_size)
    @serve.ingress(app)
    class Tagger:
        def __init__(self, config: ServeConfig):
            import torch

            from xdray.serve.tagger import Tagger as Model

            torch.set_num_threads(max(1, int(config.replica_cpus)))
            self.config = config
            self.model = Model(Path(config.model), runtime=config.runtime)

        @serve.batch(max_batch_size=cfg.max_batch_size, batch_wait_timeout_s=cfg.batch_wait_ms / 1000)
        async def tag_batched(self, lines: list[str]) -> list[dict]:
            return self.model.entities(lines)

        @app.get("/healthz", response_model=Health, summary="the replica is up and has its model")
        async def healthz(self) -> dict:
            return {"status": "ok", "model": self.config.model}

        @app.post("/predict", response_model=Union[Tagged, list[Tagged]], responses=PREDICT_ERRORS,
                  openapi_extra={"requestBody": PREDICT_BODY}, summary="entities of one text or several")
        async def predict(self, request: Request, batching: str = "on"):
            """{"text": ...} gets {"text", "entities"}; {"texts": [...]} a list of them, in order.
            `batching=off` tags the request's texts on their own, outside the batch queue."""
            try:
                texts, many = parse_request(await request.body(), self.config.max_texts, self.config.max_chars)
            except BadRequest as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
            if batching == "off":
                results = self.model.entities(texts)
            else:
                results = list(await asyncio.gather(*(self.tag_batched(t) for t in texts)))
            return JSONResponse(results if many else results[0])

    return Tagger


def application(cfg: ServeConfig):
    """The bound Serve application: fixed replicas, or autoscaling between replicas and max_replicas."""
    deployment = _deployment(cfg)
    if cfg.max_replicas > cfg.replicas:
        deployment = deployment.options(num_replicas="auto", autoscaling_config={
            "min_replicas": cfg.replicas, "max_replicas": cfg.max_replicas,
            "target_ongoing_requests": cfg.max_batch_size})
    else:
        deployment = deployment.options(num_replicas=cfg.replicas)
    return deployment.bind(cfg)


def build_app(args: dict):
    """Ray Serve application builder for config files (`import_path: xdray.serve.deploy:build_app`,
    e.g. KubeRay's RayService serveConfigV2): `args` are ServeConfig's fields, `model` required.
    The HTTP host and port are the Serve config's own (http_options), not these. Checked as a
    config file is: unknown keys (with a "did you mean"), types, `model` required."""
    return application(build_checked(ServeConfig, args, "serve args"))


def start(cfg: ServeConfig) -> str:
    """Deploy on the connected Ray cluster; returns the base URL."""
    from ray import serve

    cfg.check()
    serve.start(http_options={"host": cfg.host, "port": cfg.port})
    serve.run(application(cfg), name=APP_NAME, route_prefix="/")
    return f"http://{cfg.host}:{cfg.port}"


def swap_to_echo() -> None:
    """Replace the tagger by an echo deployment on /echo that parses the same requests and answers
    without a model: Serve's own ceiling on this cluster, which `xdray bench serve` reports beside
    the tagger (batching can remove a request's model cost, not Serve's)."""
    import json

    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(name="echo", ray_actor_options={"num_cpus": 1}, max_ongoing_requests=128)
    class Echo:
        async def __call__(self, request: Request) -> JSONResponse:
            return JSONResponse({"text": json.loads(await request.body())["text"], "entities": []})

    serve.delete(APP_NAME)  # its CPU goes to the echo
    serve.run(Echo.bind(), name="echo", route_prefix="/echo")


def shutdown() -> None:
    from ray import serve

    serve.shutdown()


def serve_forever(cfg: ServeConfig, announce) -> None:
    """`xdray serve`: join (RAY_ADDRESS) or start a cluster, deploy, `announce(url)`, and serve until
    interrupted, then shut Serve down."""
    import time

    from xdray.core.runtime import RuntimeConfig, init_ray

    cfg.check()
    init_ray(RuntimeConfig())
    announce(start(cfg))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        shutdown()

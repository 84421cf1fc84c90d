"""`xdray serve --model DIR`: the student behind Ray Serve.

`POST /predict` with {"text": "..."} returns what `xdray predict` prints for that line,
{"text", "entities": [...]}; with {"texts": [...]} a list of them. `GET /healthz` answers
{"status": "ok", "model": ...}. Lines from concurrent requests are tagged together
(`@serve.batch`), so a replica runs one ONNX Runtime call for many users. Bad requests (not JSON,
wrong types, empty, oversized) get a 4xx with a message; nothing a client sends stops a replica.

`?batching=off` tags a request's lines on their own, skipping the batch queue: a switch for
`xdray bench serve`, which compares the two on the same deployment.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from xdray.core.errors import XdrayError
from xdray.core.loader import build_checked

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
    max_texts: int = 256  # per request
    max_chars: int = 20000  # per text

    def check(self) -> None:
        from xdray.serve.tagger import model_directory

        model_directory(self.model)  # an export, or a run directory with a recommended student
        if self.replicas < 1 or (self.max_replicas and self.max_replicas < self.replicas):
            raise XdrayError(f"--replicas {self.replicas} / --max-replicas {self.max_replicas}: expected "
                             "1 <= replicas <= max-replicas")
        if self.max_batch_size < 1 or self.batch_wait_ms < 0:
            raise XdrayError("--max-batch-size must be >= 1 and --batch-wait-ms >= 0")


class BadRequest(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def parse_request(body: bytes, max_texts: int, max_chars: int) -> tuple[list[str], bool]:
    """(texts, whether the answer is a list) from a /predict body, or BadRequest."""
    import json

    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise BadRequest(400, f"body is not JSON: {err}") from None
    if not isinstance(data, dict) or len({"text", "texts"} & set(data)) != 1:
        raise BadRequest(400, 'expected an object with "text": "..." or "texts": ["...", ...]')
    many = "texts" in data
    texts = data["texts"] if many else [data["text"]]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRequest(400, '"texts" must be a list of strings' if many else '"text" must be a string')
    if not texts or not any(t.strip() for t in texts):
        raise BadRequest(400, "no text to tag")
    if len(texts) > max_texts:
        raise BadRequest(413, f"{len(texts)} texts in one request; at most {max_texts}")
    if max(len(t) for t in texts) > max_chars:
        raise BadRequest(413, f"a text of {max(len(t) for t in texts)} characters; at most {max_chars}")
    return texts, many


def _deployment(cfg: ServeConfig):
    from ray import serve
    from starlette.requests import Request
    from starlette.responses import JSONResponse

    @serve.deployment(name="tagger", ray_actor_options={"num_cpus": cfg.replica_cpus},
                      max_ongoing_requests=4 * cfg.max_batch_size)
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

        async def __call__(self, request: Request) -> JSONResponse:
            path = request.url.path.rstrip("/")
            if path == "/healthz" and request.method == "GET":
                return JSONResponse({"status": "ok", "model": self.config.model})
            if path != "/predict" or request.method != "POST":
                return JSONResponse({"error": "use POST /predict or GET /healthz"}, status_code=404)
            try:
                texts, many = parse_request(await request.body(), self.config.max_texts, self.config.max_chars)
            except BadRequest as err:
                return JSONResponse({"error": str(err)}, status_code=err.status)
            if request.query_params.get("batching") == "off":
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

"""`ltx-serve`: start the service. Defaults run the embedded tiny preset in-process on :50051."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from service.config import ServiceConfig, load_config
from service.config_types import ConfigError
from service.logs import configure_logging
from service.server import serve_forever


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="ltx-serve", description=__doc__)
    p.add_argument("--config", help="TOML file with ServiceConfig settings (flags override it)")
    p.add_argument("--host")
    p.add_argument("--port", type=int, help="gRPC port (default 50051)")
    p.add_argument("--http-port", type=int, help="port serving results (default 8080, 0 = any free port)")
    p.add_argument("--public-base-url", help="base URL clients use to reach the results HTTP server")
    p.add_argument("--data-dir", help="where the job database and results live (default ./var)")
    p.add_argument("--engine", choices=["local", "triton"])
    p.add_argument("--triton-url", help="Triton gRPC address HOST:PORT (with --engine triton)")
    p.add_argument("--preset", help="model preset: tiny (default) or ltx-video-0.9.7")
    p.add_argument("--model-dir", help="local checkpoint directory (diffusers layout) for real presets")
    p.add_argument("--device", help="where the in-process engine runs the model: cpu (default), cuda, cuda:1, ...")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"],
                   help="model precision (default float32, for the tiny preset; real weights: bfloat16 on a GPU)")
    p.add_argument("--workers", type=int, help="jobs run at once")
    p.add_argument("--max-queued", type=int, help="queued jobs before Submit answers RESOURCE_EXHAUSTED")
    p.add_argument("--retention-s", type=float, help="how long finished jobs and results are kept")
    p.add_argument("--role", choices=["all", "gateway", "worker"],
                   help="all (default: one process), gateway (API only) or worker (runs jobs)")
    p.add_argument("--database-url", default=os.environ.get("LTX_DATABASE_URL"),
                   help="job store: postgresql://USER:PASS@HOST/DB (env LTX_DATABASE_URL); default SQLite in data-dir")
    p.add_argument("--storage-url", default=os.environ.get("LTX_STORAGE_URL"),
                   help="results: s3://BUCKET/PREFIX (env LTX_STORAGE_URL; credentials from the AWS_* chain)")
    p.add_argument("--s3-endpoint-url", default=os.environ.get("LTX_S3_ENDPOINT_URL"),
                   help="S3-compatible endpoint, e.g. http://minio:9000 (env LTX_S3_ENDPOINT_URL)")
    p.add_argument("--worker-id", help="this worker's name in leases and logs (default: random)")
    p.add_argument("--lease-s", type=float, help="a running job's lease; silent workers lose jobs after it")
    p.add_argument("--heartbeat-s", type=float, help="how often workers renew leases and sweep the queue")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except ConfigError as error:  # a bad setting: say which, without a traceback
        raise SystemExit(f"ltx-serve: {error}") from None


def _main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level)
    config = load_config(
        args.config,
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        public_base_url=args.public_base_url,
        data_dir=args.data_dir,
        engine=args.engine,
        triton_url=args.triton_url,
        role=args.role,
        database_url=args.database_url,
        storage_url=args.storage_url,
        **{
            "s3.endpoint_url": args.s3_endpoint_url,
            "queue.lease_s": args.lease_s,
            "queue.worker_id": args.worker_id,
            "queue.heartbeat_s": args.heartbeat_s,
            "model.preset": args.preset,
            "model.model_dir": args.model_dir,
            "model.device": args.device,
            "model.dtype": args.dtype,
            "queue.workers": args.workers,
            "queue.max_queued": args.max_queued,
            "queue.retention_s": args.retention_s,
        },
    )
    asyncio.run(_run(config))


async def _run(config: ServiceConfig) -> None:
    task = asyncio.create_task(serve_forever(config))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        pass  # a signal asked us to stop; serve_forever has shut down cleanly


if __name__ == "__main__":
    main()

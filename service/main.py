"""`ltx-serve`: start the service. Defaults run the embedded tiny preset in-process on :50051."""

from __future__ import annotations

import argparse
import asyncio
import signal

from service.config import ServiceConfig, load_config
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
    p.add_argument("--ltx2-preset", help="LTX-2.3 family: tiny-ltx2 (default), ltx-2.3 (with --ltx2-model-dir) or none")
    p.add_argument("--ltx2-model-dir", help="local LTX-2.3 checkpoint directory (diffusers layout)")
    p.add_argument("--workers", type=int, help="jobs run at once")
    p.add_argument("--max-queued", type=int, help="queued jobs before Submit answers RESOURCE_EXHAUSTED")
    p.add_argument("--retention-s", type=float, help="how long finished jobs and results are kept")
    p.add_argument("--log-level", default="INFO")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
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
        **{
            "model.preset": args.preset,
            "model.model_dir": args.model_dir,
            "ltx2.preset": args.ltx2_preset,
            "ltx2.model_dir": args.ltx2_model_dir,
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

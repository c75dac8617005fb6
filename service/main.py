"""`ltx-serve`: start the service. Defaults run the embedded tiny preset in-process on :50051."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from service.config import ServiceConfig, load_config
from service.config_types import ConfigError
from service.logs import configure_logging
from service.server import serve_forever

log = logging.getLogger(__name__)


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
    p.add_argument(
        "--ltx2-preset", help="LTX-2.3 family: tiny-ltx2 (default), ltx-2.3 (with --ltx2-model-dir) or none"
    )
    p.add_argument("--ltx2-model-dir", help="local LTX-2.3 checkpoint directory (diffusers layout)")
    p.add_argument(
        "--device", help="where the in-process engine runs the model: cpu (default), cuda, cuda:1, ..."
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        help="model precision (default float32, for the tiny preset; real weights: bfloat16 on a GPU)",
    )
    p.add_argument("--workers", type=int, help="jobs run at once")
    p.add_argument("--max-queued", type=int, help="queued jobs before Submit answers RESOURCE_EXHAUSTED")
    p.add_argument("--retention-s", type=float, help="how long finished jobs and results are kept")
    p.add_argument("--shutdown-grace-s", type=float, help="SIGTERM: seconds running jobs get to finish")
    p.add_argument("--max-retries", type=int, help="re-runs of an interrupted job before it fails")
    p.add_argument(
        "--role",
        choices=["all", "gateway", "worker"],
        help="all (default: one process), gateway (API only) or worker (runs jobs)",
    )
    p.add_argument(
        "--database-url",
        default=os.environ.get("LTX_DATABASE_URL"),
        help="job store: postgresql://USER:PASS@HOST/DB (env LTX_DATABASE_URL); default SQLite in data-dir",
    )
    p.add_argument(
        "--storage-url",
        default=os.environ.get("LTX_STORAGE_URL"),
        help="results: s3://BUCKET/PREFIX (env LTX_STORAGE_URL; credentials from the AWS_* chain)",
    )
    p.add_argument(
        "--s3-endpoint-url",
        default=os.environ.get("LTX_S3_ENDPOINT_URL"),
        help="S3-compatible endpoint, e.g. http://minio:9000 (env LTX_S3_ENDPOINT_URL)",
    )
    p.add_argument(
        "--webhook-signing-key-file",
        default=os.environ.get("LTX_WEBHOOK_SIGNING_KEY_FILE"),
        help="Ed25519 private key (PEM) signing webhooks; the same file on every replica "
        "(env LTX_WEBHOOK_SIGNING_KEY_FILE; default data-dir/webhook_key.pem, created)",
    )
    p.add_argument("--worker-id", help="this worker's name in leases and logs (default: random)")
    p.add_argument("--lease-s", type=float, help="a running job's lease; silent workers lose jobs after it")
    p.add_argument("--heartbeat-s", type=float, help="how often workers renew leases and sweep the queue")
    p.add_argument("--admin-port", type=int, help="plaintext gRPC port for health and reflection (probes)")
    p.add_argument("--metrics-port", type=int, help="HTTP port serving Prometheus /metrics")
    p.add_argument("--api-keys-file", help="TOML file of API keys; set = every API call needs a key")
    p.add_argument("--tls-cert-file", help="server certificate chain (PEM); with --tls-key-file = TLS")
    p.add_argument("--tls-key-file", help="server private key (PEM)")
    p.add_argument("--tls-client-ca-file", help="CA bundle for client certificates (PEM) = mTLS")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=["text", "json"], default="text", help="json: one object per line")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    try:
        _main(argv)
    except ConfigError as error:  # a bad setting: say which, without a traceback
        raise SystemExit(f"ltx-serve: {error}") from None


def _main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_logging(args.log_level, args.log_format)
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
        admin_port=args.admin_port,
        **{
            "s3.endpoint_url": args.s3_endpoint_url,
            "queue.lease_s": args.lease_s,
            "queue.worker_id": args.worker_id,
            "webhooks.signing_key_file": args.webhook_signing_key_file,
            "queue.heartbeat_s": args.heartbeat_s,
            "model.preset": args.preset,
            "model.model_dir": args.model_dir,
            "ltx2.preset": args.ltx2_preset,
            "ltx2.model_dir": args.ltx2_model_dir,
            "model.device": args.device,
            "model.dtype": args.dtype,
            "queue.workers": args.workers,
            "queue.max_queued": args.max_queued,
            "queue.retention_s": args.retention_s,
            "queue.max_retries": args.max_retries,
            "shutdown.grace_s": args.shutdown_grace_s,
            "metrics.port": args.metrics_port,
            "auth.api_keys_file": args.api_keys_file,
            "auth.tls_cert_file": args.tls_cert_file,
            "auth.tls_key_file": args.tls_key_file,
            "auth.tls_client_ca_file": args.tls_client_ca_file,
        },
    )
    asyncio.run(_run(config))
    # Everything durable is closed by now (store, results, gRPC). Tearing down the interpreter with
    # torch, onnxruntime and grpc loaded takes seconds of native finalizers on a busy machine, which
    # would break the shutdown deadline (grace + a few seconds): leave at once.
    log.info("exiting")
    logging.shutdown()
    os._exit(0)


async def _run(config: ServiceConfig) -> None:
    """The first SIGTERM/SIGINT starts the drain (see serve_forever); a second one stops at once.

    The signal only sets an event: the shutdown code runs in the serving task, which nothing cancels.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(serve_forever(config, stop))
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("second signal: stopping without waiting for running jobs")
            task.cancel()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await task
    except asyncio.CancelledError:
        pass  # stopped hard; jobs still running are re-queued on the next start


if __name__ == "__main__":
    main()

"""`ltx-client`: call the service from the command line with requests in the specs' JSON form.

    ltx-client run ltx-video-lora --input request.json --out results/
    ltx-client status REQUEST_ID --logs
    ltx-client cancel REQUEST_ID
    ltx-client upload cat.png

Local files named as inputs (`"image_url": "./cat.png"`, relative to the current directory) are
uploaded with the Upload RPC before the request is submitted.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from tqdm import tqdm

from ltx.v1 import video_generation_pb2 as pb
from ltx.v1 import video_generation_pb2_grpc as pb_grpc
from service.api.convert import output_to_json
from service.api.endpoints import api_endpoint, input_from_json
from service.api.status import field_violations
from service.domain.specs import Endpoint

DEFAULT_SERVER = "127.0.0.1:50051"


def build_request(endpoint_id: str, data: dict[str, Any]) -> pb.SubmitRequest:
    message = input_from_json(endpoint_id, data)
    return pb.SubmitRequest(input=api_endpoint(endpoint_id).input_container(message))


UPLOADABLE_KEYS = ("image_url", "video_url", "path")  # `path`: a LoRA's weights
UPLOAD_CHUNK = 1024 * 1024


def upload_file(stub: pb_grpc.VideoGenerationStub, path: Path) -> str:
    """Stream a local file through the Upload RPC; returns the URL the service accepts as an input."""

    def chunks() -> Any:
        with path.open("rb") as f:
            first = True
            while (chunk := f.read(UPLOAD_CHUNK)) or first:
                yield pb.UploadRequest(file_name=path.name if first else "", chunk=chunk)
                first = False

    return str(stub.Upload(chunks(), timeout=600).url)


def upload_local_files(stub: pb_grpc.VideoGenerationStub, data: Any, base_dir: Path) -> Any:
    """The request with every local file named as an input (`"image_url": "./cat.png"`) uploaded first
    and replaced by its URL. URLs and data: URIs are left as they are."""
    if isinstance(data, list):
        return [upload_local_files(stub, item, base_dir) for item in data]
    if not isinstance(data, dict):
        return data
    out = {}
    for key, value in data.items():
        if (
            key in UPLOADABLE_KEYS
            and isinstance(value, str)
            and value
            and "://" not in value
            and not value.startswith("data:")
            and (base_dir / value).is_file()
        ):
            out[key] = upload_file(stub, base_dir / value)
            print(f"uploaded {value} -> {out[key].split('?')[0]}", file=sys.stderr)
        else:
            out[key] = upload_local_files(stub, value, base_dir)
    return out


def run(
    stub: pb_grpc.VideoGenerationStub,
    endpoint_id: str,
    data: dict[str, Any],
    out_dir: Path,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Upload local input files; generate with a live progress bar; print log lines; download the video.
    Returns the output JSON."""
    data = upload_local_files(stub, data, base_dir or Path.cwd())
    request = build_request(endpoint_id, data)
    bar: tqdm | None = None
    last: pb.JobEvent | None = None
    try:
        for event in stub.Generate(request):
            last = event
            for line in event.logs:
                tqdm.write(f"[{line.level}] {line.message}", file=sys.stderr)
            if event.status == pb.IN_QUEUE:
                tqdm.write(f"in queue, position {event.queue_position}", file=sys.stderr)
            p = event.progress
            if p.stage == "denoising" and p.total_steps:
                if bar is None:
                    bar = tqdm(total=p.total_steps, desc="denoising", unit="step", file=sys.stderr)
                bar.update(p.step - bar.n)
    finally:
        if bar is not None:
            bar.close()
    if last is None or last.status != pb.COMPLETED:
        raise RuntimeError("the stream ended before the request completed")
    if last.HasField("error"):
        raise RuntimeError(f"request {last.request_id} failed: {last.error.error_type}: {last.error.message}")
    output = getattr(last.result, api_endpoint(endpoint_id).oneof_field)
    result = output_to_json(output)
    _download(result["video"]["url"], out_dir / result["video"].get("file_name", f"{last.request_id}.mp4"))
    return result


def _download(url: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(url, timeout=60) as response, path.open("wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)
    print(f"saved {path}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.VideoGenerationStub(channel)
        try:
            if args.command == "run":
                data = json.loads(Path(args.input).read_text())
                print(json.dumps(run(stub, args.endpoint_id, data, Path(args.out)), indent=2))
            elif args.command == "status":
                status = stub.Status(pb.StatusRequest(request_id=args.request_id, logs=args.logs))
                print(json_format.MessageToJson(status, preserving_proto_field_name=True))
            elif args.command == "upload":
                print(upload_file(stub, Path(args.file)))
            elif args.command == "cancel":
                response = stub.Cancel(pb.CancelRequest(request_id=args.request_id))
                print(pb.CancelStatus.Name(response.status))
        except grpc.RpcError as error:
            _report(error)
            return 2
        except RuntimeError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


def _report(error: grpc.RpcError) -> None:
    print(f"error: {error.code().name}: {error.details()}", file=sys.stderr)
    for field, description in field_violations(error):
        print(f"  {field}: {description}", file=sys.stderr)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="ltx-client", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"gRPC address (default {DEFAULT_SERVER})")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="generate and download the result")
    r.add_argument("endpoint_id", choices=[e.value for e in Endpoint])
    r.add_argument("--input", required=True, help="request JSON in the spec's form")
    r.add_argument("--out", default=".", help="directory for the downloaded video")
    s = sub.add_parser("status", help="show a request's status")
    s.add_argument("request_id")
    s.add_argument("--logs", action="store_true")
    u = sub.add_parser("upload", help="upload an input file; prints its URL")
    u.add_argument("file")
    c = sub.add_parser("cancel", help="cancel a request")
    c.add_argument("request_id")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())

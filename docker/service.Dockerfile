# The service image: `ltx-serve` for every role (all | gateway | worker with --engine local).
#   docker build -f docker/service.Dockerfile -t ltx-video-service:0.1.0 .
#   GPU in-process engine: --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0
COPY pyproject.toml README.md ./
COPY protos ./protos
RUN pip install 'grpcio-tools==1.81.*' 'protobuf>=5.29,<7' \
 && mkdir -p ltx/v1 \
 && python -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/ltx/v1/*.proto \
 && touch ltx/__init__.py ltx/v1/__init__.py
COPY service ./service
COPY export ./export
RUN pip install .

FROM ${PYTHON_IMAGE}
# Same numeric user as the chart's podSecurityContext (runAsNonRoot needs a numeric USER).
RUN groupadd --gid 10001 ltx && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home ltx \
 && mkdir -p /var/lib/ltx && chown 10001:10001 /var/lib/ltx
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/ltx
# gRPC API, admin (health + reflection), Prometheus /metrics, results over HTTP.
EXPOSE 50051 50052 9090 8080
ENTRYPOINT ["ltx-serve"]
CMD ["--host", "0.0.0.0", "--admin-port", "50052", "--metrics-port", "9090", "--data-dir", "/var/lib/ltx"]

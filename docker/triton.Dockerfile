# The Triton worker image: NVIDIA's Triton container + the package (the `ltx_pipeline` Python model
# imports it) + the generated model repository at /opt/ltx/model_repository (the chart's default
# triton.modelRepository.path). TensorRT plans built by export/ go on a volume instead (source: pvc).
#   docker build -f docker/triton.Dockerfile -t ltx-video-triton:0.1.0 .
ARG TRITON_IMAGE=nvcr.io/nvidia/tritonserver:26.07-py3

FROM ${TRITON_IMAGE}
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
RUN pip install --index-url "${TORCH_INDEX}" torch==2.13.0
COPY pyproject.toml README.md ./
COPY protos ./protos
RUN pip install 'grpcio-tools==1.81.*' 'protobuf>=5.29,<7' \
 && mkdir -p ltx/v1 \
 && python3 -m grpc_tools.protoc -Iprotos --python_out=. --pyi_out=. --grpc_python_out=. protos/ltx/v1/*.proto \
 && touch ltx/__init__.py ltx/v1/__init__.py
COPY service ./service
COPY export ./export
RUN pip install . && rm -rf /src
COPY model_repository /opt/ltx/model_repository
RUN groupadd --gid 10001 ltx && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home ltx
USER 10001:10001
WORKDIR /tmp
# Triton HTTP, gRPC, metrics (reached by ltx-serve over the pod's loopback).
EXPOSE 8000 8001 8002
ENTRYPOINT ["tritonserver"]
CMD ["--model-repository=/opt/ltx/model_repository"]

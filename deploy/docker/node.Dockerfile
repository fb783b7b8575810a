# syntax=docker/dockerfile:1
# docker build -f deploy/docker/node.Dockerfile -t chatbot/whatsapp-baileys-server:0.1.0 .
# Pin the base by digest in your registry mirror (`node:20.19.5-bookworm-slim@sha256:…`).
# `make images` builds it with podman on a local Debian base (scripts/images.py).
ARG NODE_IMAGE=node:20.19.5-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY whatsapp_baileys_server/package.json whatsapp_baileys_server/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY whatsapp_baileys_server/package.json ./
COPY whatsapp_baileys_server/src ./src
USER 10001:10001
EXPOSE 8091
CMD ["node", "src/index.js"]

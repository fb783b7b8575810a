FROM node:20-slim
WORKDIR /app
COPY whatsapp_baileys_server/package.json whatsapp_baileys_server/package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund
COPY whatsapp_baileys_server/src ./src
USER 10001:10001
CMD ["node", "src/index.js"]

FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY insole_common insole_common
COPY collector collector
COPY processing processing
COPY dashboards dashboards
COPY simulator simulator
COPY kinetic kinetic
RUN pip install --no-cache-dir .
USER nobody
ENTRYPOINT []

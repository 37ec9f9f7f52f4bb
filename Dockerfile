FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY insole_common insole_common
COPY transport transport
COPY storage storage
COPY collector collector
COPY processing processing
COPY dashboards dashboards
COPY simulator simulator
COPY kinetic kinetic
COPY research research
RUN pip install --no-cache-dir .
# the processing service's volume (raw archive): writable by the unprivileged user, nothing else is
RUN mkdir -p /data && chown nobody:nogroup /data
USER nobody
ENTRYPOINT []

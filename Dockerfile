# One image for every choreokit service; the command picks the service:
#   docker run IMAGE run payments
# Build: docker build -t choreokit .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY choreokit ./choreokit
COPY events ./events
COPY tracing ./tracing
COPY services ./services
# The example domain and the toolkit's apps: what docker-compose.yml runs.
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt ".[example]"

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin choreo
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "choreokit[example]" && rm -rf /wheels
USER choreo
WORKDIR /home/choreo
ENV PYTHONUNBUFFERED=1 \
    CHOREO_PROFILE=production \
    CHOREO_DATA_DIR=/home/choreo/data \
    CHOREO_READY_FILE=/tmp/choreo.ready
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 CMD ["choreo", "health"]
ENTRYPOINT ["choreo"]
CMD ["--help"]

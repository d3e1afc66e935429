# The llmctl image: `llmctl gateway serve` (the default command) and `llmctl sim serve`.
#
# Build from the repository root (the root .dockerignore trims the context to what pip needs):
#   docker build -f docker/gateway.Dockerfile -t llmctl:0.1.0 .
# Without PyPI (air-gapped builders), fill docker/wheels/ first and pick a local base image:
#   pip wheel '.[fast]' -w docker/wheels
#   docker build -f docker/gateway.Dockerfile --build-arg BASE_IMAGE=llmctl-base:bookworm -t llmctl:local .
# docker/build-local-images does both (see docs/docker.md).

# A patch-level tag: the Python ABI of the wheels and of the base must agree (cp311).
ARG BASE_IMAGE=python:3.11.11-slim-bookworm
FROM ${BASE_IMAGE}

# Few instructions on purpose: on storage drivers without copy-on-write (vfs) every step copies
# the whole filesystem.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/llmctl/bin:$PATH \
    LLMCTL_GATEWAY_HOST=0.0.0.0 \
    LLMCTL_GATEWAY_PORT=8080 \
    LLMCTL_HEALTH_URL=http://127.0.0.1:8080/health

# A virtualenv works the same on python:*-slim and on Debian's python3 (which refuses system-wide
# pip). With wheels in docker/wheels nothing is downloaded.
COPY . /tmp/src/
RUN python3 -m venv /opt/llmctl \
 && if ls /tmp/src/docker/wheels/*.whl >/dev/null 2>&1; then \
        pip install --no-index --find-links=/tmp/src/docker/wheels 'llmctl[fast]'; \
    else \
        pip install '/tmp/src[fast]'; \
    fi \
 && rm -rf /tmp/src \
 && useradd --uid 10001 --user-group --create-home --home-dir /home/llmctl llmctl \
 && llmctl --version

USER 10001:10001
WORKDIR /home/llmctl
# Both servers listen on every interface inside the container; compose publishes only the gateway.
EXPOSE 8080 8000

# Python ignores SIGTERM as PID 1 unless it installs a handler; SIGINT always stops it cleanly.
STOPSIGNAL SIGINT

# Compose overrides this per service (the simulator points LLMCTL_HEALTH_URL at its /health);
# python3 keeps the probe free of curl/wget so it works on any base.
HEALTHCHECK --interval=5s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['LLMCTL_HEALTH_URL'], timeout=2)"]

ENTRYPOINT ["llmctl"]
CMD ["gateway", "serve"]

# gemini-server: uvicorn serving the ASGI app as uid 10001 (one worker per core), with bubblewrap for the shell tool
# and ripgrep for grep_search.
FROM python:3.11-slim

# DATA_DIR holds the SQLite database and the generated SECRET_KEY: mount a volume there to keep them.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=3000 \
    HOST=0.0.0.0 \
    DJANGO_DEBUG=false \
    DATA_DIR=/app/data \
    WORKSPACES_ROOT=/app/workspaces \
    PROMETHEUS_MULTIPROC_DIR=/tmp/gemini-server-metrics \
    HOME=/home/app

# bubblewrap follows the base image's Debian release; util-linux (setpriv) is already there.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ripgrep \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN groupadd --gid 10001 app \
    && useradd --create-home --uid 10001 --gid 10001 app \
    && mkdir -p /app/data /app/workspaces \
    && chown 10001:10001 /app/data /app/workspaces

EXPOSE 3000
VOLUME ["/app/data", "/app/workspaces"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"]

# The entrypoint starts as root only to give the volumes to uid 10001 (a bind-mounted ./workspaces
# that Docker created belongs to root), then drops to that uid for good; it migrates, creates the
# first admin from DJANGO_SUPERUSER_EMAIL/PASSWORD, and runs the server (uvicorn, one worker per core). `docker run --user 10001`
# skips the ownership step and says so when a volume is not writable.
# No --proxy-headers: the client IP comes from X-Forwarded-For only per TRUSTED_PROXY_COUNT.
ENTRYPOINT ["/app/scripts/docker-entrypoint"]
CMD ["/app/scripts/run-server"]

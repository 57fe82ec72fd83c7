# gemini-server: daphne serving the ASGI app, as a non-root user, with bubblewrap for the shell tool
# and ripgrep for grep_search.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORT=3000 \
    WORKSPACES_ROOT=/app/workspaces \
    HOST=0.0.0.0 \
    DJANGO_DEBUG=false

RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap ripgrep \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
RUN useradd --create-home --uid 10001 app \
    && mkdir -p /app/workspaces \
    && chown -R app:app /app/workspaces

USER app
EXPOSE 3000
VOLUME ["/app/workspaces"]

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/health', timeout=4)"

# Migrations run at start so a fresh database works; daphne then serves HTTP, SSE and WebSockets.
# No --proxy-headers: the client IP comes from X-Forwarded-For only per TRUSTED_PROXY_COUNT.
CMD ["sh", "-c", "python manage.py migrate --noinput && exec scripts/run-daphne"]

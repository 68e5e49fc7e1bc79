# Leadrouter service image: `python -m services.lead_router` by default; the same image runs
# `python -m services.sla_monitor` and `leadrouter migrate` (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system leadrouter \
    && useradd --system --gid leadrouter --home-dir /app --shell /usr/sbin/nologin leadrouter

WORKDIR /app
COPY . .
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

USER leadrouter

EXPOSE 8000 8001
CMD ["python", "-m", "services.lead_router"]

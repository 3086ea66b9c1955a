# One image for every sitewatch role; the command picks the role (`sitewatch <command>`).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md* ./
COPY app app
COPY streams streams
COPY probes probes
COPY sink sink
COPY notify notify
COPY api api
COPY migrations migrations
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
COPY --from=build /install /usr/local
RUN useradd --system --home-dir /var/lib/sitewatch --create-home sitewatch
USER sitewatch
WORKDIR /var/lib/sitewatch
ENV SITEWATCH_STATE_DIR=/var/lib/sitewatch \
    PYTHONUNBUFFERED=1
# exec form: SIGTERM reaches sitewatch itself, which stops cleanly
ENTRYPOINT ["sitewatch"]
CMD ["--help"]

# lossd: loss functions as a service, in a slim image with numba's cache compiled in.
#
#   docker build -t lossd .          (podman: podman build --format docker -t lossd .)
#   docker run --read-only --tmpfs /tmp -p 8000:8000 lossd
#
# The cache is only hit on a CPU like the build machine's (numba keys it by CPU model and
# features); elsewhere the kernels are compiled at start and /readyz says how many.

FROM python:3.11-slim-bookworm AS build

# One virtual environment holds everything the service runs; the runtime stage copies it.
RUN python3 -m venv /opt/lossd
WORKDIR /src

# Dependencies first, read from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
RUN python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"], sep="\n")' > requirements.txt \
    && /opt/lossd/bin/pip install --no-cache-dir --requirement requirements.txt

# Then the app, installed (not editable) into site-packages, whose files the numba cache stamps;
# the explorer page's files (service/explorer/static) go with it as pyproject.toml's package-data.
COPY README.md ./
COPY service ./service
RUN /opt/lossd/bin/pip install --no-cache-dir --no-deps /src


FROM python:3.11-slim-bookworm

# libgomp1: numba's omp threading layer (lossd refuses the thread-unsafe workqueue layer).
RUN apt-get update \
    && apt-get install -y --no-install-recommends 'libgomp1=12.2.0-14*' \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin lossd

COPY --from=build /opt/lossd /opt/lossd
COPY docker/entrypoint.sh docker/healthcheck.py /opt/lossd/docker/

# NUMBA_CACHE_DIR is set, so lossd uses it as it is, not a directory keyed by the kernel sources
# under ~/.cache/lossd (service/kernel_cache.py): an image's sources never change under its cache.
ENV PATH=/opt/lossd/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    LOSSD_HOST=0.0.0.0 \
    LOSSD_PORT=8000 \
    LOSSD_WORKERS=1

# Compile every kernel now, into the image; the entry point copies this cache to NUMBA_CACHE_DIR.
RUN NUMBA_CACHE_DIR=/opt/lossd/numba-cache python -c 'from service.warmup import warm_up; warm_up()'

USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "/opt/lossd/docker/healthcheck.py"]
ENTRYPOINT ["/opt/lossd/docker/entrypoint.sh"]
CMD ["lossd", "serve"]

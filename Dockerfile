# syntax=docker/dockerfile:1
#
# Serving image (the default, last stage) and training image (`--target train`).
#   GPU: docker build -t wavenet .
#   CPU: docker build -t wavenet:cpu --build-arg BASE=ubuntu:24.04 \
#          --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cpu .
# TORCH_INDEX must match the CUDA of BASE; the torch pins match the Makefile's.

# Ubuntu 24.04 under both bases: its Python 3.12 meets requires-python >= 3.11.
ARG BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM ${BASE} AS python
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric UID, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
RUN groupadd --gid 10001 wavenet \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin wavenet
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1

# Compilers live only here: pesq (train extras) may build from source.
FROM python AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ARG TORCH_VERSION=2.14.1
ARG TORCHAUDIO_VERSION=2.11.0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential python3-dev \
    && rm -rf /var/lib/apt/lists/*
# torch first, from its own index: the largest layer, rebuilt only when the pins change.
# pip then keeps this build, since it satisfies pyproject's torch range.
RUN python3 -m venv /opt/venv \
    && pip install --no-cache-dir --index-url "${TORCH_INDEX}" \
        "torch==${TORCH_VERSION}" "torchaudio==${TORCHAUDIO_VERSION}"
WORKDIR /opt/wavenet/app
COPY pyproject.toml README.md ./
COPY wavenet/ wavenet/
COPY service/ service/

# Editable installs: the service reads its demo page from service/static beside its code.
FROM build AS build-serve
RUN pip install --no-cache-dir -e ".[serve]"

FROM build AS build-train
COPY training/ training/
RUN pip install --no-cache-dir -e ".[train]"

# Training, distillation and evaluation jobs, e.g. under torchrun (deploy/k8s/distill-job.yaml).
FROM python AS train
COPY --from=build-train /opt/venv /opt/venv
COPY --from=build-train /opt/wavenet/app /opt/wavenet/app
USER 10001:10001
WORKDIR /home/wavenet
ENTRYPOINT ["wavenet"]
CMD ["--help"]

FROM python AS serve
COPY --from=build-serve /opt/venv /opt/venv
COPY --from=build-serve /opt/wavenet/app /opt/wavenet/app
# The shipped checkpoints; mount another volume and set WAVENET_MODEL to serve a new model.
COPY models/default/ /opt/wavenet/models/default/
ENV WAVENET_MODEL=/opt/wavenet/models/default/student \
    WAVENET_DEVICE=auto
USER 10001:10001
WORKDIR /opt/wavenet
EXPOSE 8000
# Ready only after the model is loaded and warmed up; urlopen raises on the 503 before that.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
# SIGTERM stops accepting connections, lets requests in flight finish, then stops the
# worker; give it time (docker stop -t 60, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
CMD ["wavenet", "serve", "--host", "0.0.0.0", "--port", "8000"]

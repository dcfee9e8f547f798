# The project Dockerfile's BASE where python:3.11-slim-bookworm cannot be pulled: bookworm's own python3.11, made to
# look like the official image's Python (python, pip and site-packages under /usr/local). scripts/docker_image.sh.
ARG DEBIAN=twostream-debian:bookworm
FROM ${DEBIAN}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# The machine's extra CA certificates (here a TLS-intercepting proxy's), so that pip reaches PyPI through it.
COPY certs/ /usr/local/share/ca-certificates/
# A venv at /usr/local: /usr/local/bin/python and pip, packages in /usr/local/lib/python3.11/site-packages,
# the paths the project Dockerfile uses; its runtime stage copies /usr/local onto the same base, venv included.
# python3.11-dev: the headers the official image has (Horovod's build compiles against them).
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates python3.11 python3.11-venv python3.11-dev \
 && rm -rf /var/lib/apt/lists/* \
 && update-ca-certificates \
 && python3.11 -m venv /usr/local \
 && printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > /etc/pip.conf
ENV LANG=C.UTF-8
CMD ["python3"]

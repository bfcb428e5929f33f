# The cmq image: the controller's services (recorder, workers, Flower, `cmq serve`) and the
# stack's machines (sshd) all run it. `docker-compose build` makes it from the public
# python:3.11-slim; docker/build-offline.sh gives it a base made here, offline.
ARG BASE=python:3.11-slim
FROM ${BASE}

# ssh both ways and rsync (workers reach machines; machines serve ssh), tini as PID 1,
# procps (ps for job control). The offline base has them already.
RUN set -eux; \
    missing=""; \
    for program in /usr/sbin/sshd /usr/bin/ssh /usr/bin/rsync /usr/bin/tini /usr/bin/ps; do \
        [ -x "$program" ] || missing="$missing $program"; \
    done; \
    if [ -n "$missing" ]; then \
        apt-get update -qq; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            openssh-server openssh-client rsync tini procps; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    rm -f /etc/ssh/ssh_host_*; \
    mkdir -p /run/sshd

# cmq's dependencies first (a layer that a change of cmq's code keeps), then cmq itself
# from this checkout, in a venv on PATH; nothing else of the checkout is kept.
COPY pyproject.toml /tmp/cmq/
RUN python3 -m venv /opt/cmq \
    && /opt/cmq/bin/python -c "import tomllib; print(*tomllib.load(open('/tmp/cmq/pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/cmq/requirements.txt \
    && /opt/cmq/bin/pip install --no-cache-dir -q -r /tmp/cmq/requirements.txt
COPY README.md /tmp/cmq/
COPY cmqueue /tmp/cmq/cmqueue
RUN /opt/cmq/bin/pip install --no-cache-dir -q --no-deps /tmp/cmq && rm -rf /tmp/cmq
COPY docker/stack-keys.sh /usr/local/bin/cmq-stack-keys
COPY docker/cmq.yaml /etc/cmq/cmq.yaml
ENV PATH=/opt/cmq/bin:$PATH \
    CMQ_CONFIG=/etc/cmq/cmq.yaml \
    PYTHONUNBUFFERED=1
WORKDIR /root
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["cmq", "--help"]

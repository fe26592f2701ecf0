# syntax=docker/dockerfile:1
#
# kube-nftproxy node image: `docker build -t kube-nftproxy:0.1.0 .`
#
# Two stages: `build` has the full toolchain (dev dependencies, TypeScript) and compiles
# src/ to dist/src; `runtime` has Node, the production dependencies, the compiled code and the
# two system tools the daemon runs (nft, conntrack), nothing that compiles.
#
# Base images are pinned by exact version tag (Node 20.20.2 on Debian trixie), never by a
# moving tag such as `20` or `latest`: @kubernetes/client-node 1.4 is the line that supports
# Node 20, and trixie ships nft 1.1.3. Not bookworm: its nft 1.0.6 crashes (SIGSEGV) on a node
# whose firewall a newer nft wrote (interval or dynamic sets), in `nft list ruleset` and in every
# transaction, so kube-proxy and kube-nftproxy could not start there (docs/nft-facts.md,
# kubernetes/kubernetes#136786). Both versions pass the kernel tests (.ci/run).

############################## build ##############################
FROM node:20.20.2-trixie AS build
WORKDIR /app

# Dependencies first: this layer is reused as long as the lockfile does not change.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund

COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

############################## runtime ##############################
FROM node:20.20.2-trixie-slim AS runtime

# nftables: the `nft` binary the rules are applied with (the kernel modules come from the host):
#   trixie's 1.1.3, which reads what older and newer nft write.
# conntrack: deletes stale UDP conntrack entries when an endpoint goes away.
# iproute2: `ip` to find this node's addresses (DESIGN.md, Dependencies).
# iptables: iptables-nft and iptables-legacy, to remove kube-proxy's iptables and IPVS leftovers
#   when taking a node over (src/kube-proxy-leftovers.ts).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        nftables \
        conntrack \
        iproute2 \
        iptables \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# glibc's malloc keeps what the daemon frees unless told otherwise, and a full sync at 10,000
# Services frees a lot (the lists as read, the transaction as written to nft). Measured with
# `npm run bench` (daemon-latency, RSS after a quiet minute): 225 MB with glibc's defaults.
# - MALLOC_ARENA_MAX=2: each of node's threads (libuv's pool, V8's GC and compiler workers)
#   would get an arena of its own; the allocations that matter are the main thread's. 200-215 MB.
# - MALLOC_MMAP_THRESHOLD_=65536: fixes the size from which a block is mmapped (and unmapped
#   when freed). glibc otherwise raises it to the largest block freed so far, up to 32 MB, and
#   the next large Buffers fragment the heap for good. 190-195 MB. At 65536 rather than
#   131072, the 64 KB buffers a socket reads into (the lists arrive in them) are mmapped too:
#   at 30,000 Services, 436 MB instead of 479 MB after a quiet half minute (scale bench).
ENV NODE_ENV=production MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=65536

# Production dependencies only. No dependency in the production tree has an install script, so
# none is run (`--ignore-scripts`), and the npm cache is not kept in the image.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund \
    && npm cache clean --force

COPY --from=build /app/dist/src ./dist/src

# package.json `bin` maps kube-nftproxy to dist/src/cli.js. A small exec wrapper (not a symlink)
# puts the command on PATH: node then sees the real path of cli.js as argv[1], so an
# "am I the main module" check in cli.js holds, and node replaces the shell (it is PID 1 and
# receives SIGTERM from the kubelet directly).
RUN printf '#!/bin/sh\nexec node /app/dist/src/cli.js "$@"\n' > /usr/local/bin/kube-nftproxy \
    && chmod 0755 /usr/local/bin/kube-nftproxy

# No USER: the daemon runs as root, and cannot do otherwise. It changes nftables, which needs
# CAP_NET_ADMIN, and Kubernetes gives the capabilities a pod adds (securityContext.capabilities)
# only to a process running as uid 0: a non-root container gets no ambient capabilities, and
# file capabilities on nft would be refused under allowPrivilegeEscalation: false
# (no_new_privs). The DaemonSet instead drops every other capability, keeps the root
# filesystem read-only and is not privileged (manifests/daemonset.yaml).
ENTRYPOINT ["kube-nftproxy"]

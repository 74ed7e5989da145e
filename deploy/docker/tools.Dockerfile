# The compose setups' tools image: what the services around ecu-kubelet run.
# It holds the repository's source in /src, the local control plane
# (etcd, kube-apiserver, kube-controller-manager and kubectl, built here from
# the Go module proxy: minutes, once), an ecu-kubelet binary for the test's
# `firmware build` and `sim status`, iproute2 for the vcan interfaces; the
# services run the scripts of deploy/docker from /src. Build context: the repository's root.
#
# The simulator and the provider do not run from it: they run the release
# image of deploy/Dockerfile, the image users deploy.
ARG GO_VERSION=1.26
FROM docker.io/library/golang:${GO_VERSION}-bookworm
# The golang images set GOTOOLCHAIN=local; go.mod may want a newer patch
# release than the tag holds, which auto fetches from the module proxy.
ENV GOTOOLCHAIN=auto
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# controlplane build prints "NAME PATH" for each program it built into the
# Go user cache; kubectl goes on PATH.
RUN CGO_ENABLED=0 go build -trimpath -o /usr/local/bin/ecu-kubelet ./cmd/ecu-kubelet \
 && go build -trimpath -o /usr/local/bin/controlplane ./provider/internal/controlplane/cmd/controlplane \
 && ln -s "$(controlplane build | awk '$1 == "kubectl" { print $2 }')" /usr/local/bin/kubectl \
 && kubectl version --client

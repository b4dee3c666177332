# syntax=docker/dockerfile:1
# The GPU silo image: src/XGenMM.Silo built against TorchSharp's CUDA backend (-p:TorchBackend=cuda), on a CUDA
# runtime base with the ASP.NET Core runtime. The model is never part of the image: mount it and set Model__Path, or
# let the Helm chart download it at start. Runs as uid 1654 and works with a read-only root filesystem (/tmp writable).
#   docker build -f deploy/docker/silo.Dockerfile -t xgenmm/silo:0.1.0 .
# CUDA_IMAGE must carry a CUDA 12 runtime that the nodes' driver supports (TorchSharp-cuda-linux ships libtorch for CUDA 12).
ARG DOTNET_VERSION=10.0
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-runtime-ubuntu24.04

FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION}-noble AS build
WORKDIR /src
# Restore from the project files alone first: the CUDA packages are large and this layer survives source edits.
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
COPY src/XGenMM.Model.Hub/XGenMM.Model.Hub.csproj src/XGenMM.Model.Hub/
COPY src/XGenMM.Model.Core/XGenMM.Model.Core.csproj src/XGenMM.Model.Core/
COPY src/XGenMM.Model/XGenMM.Model.csproj src/XGenMM.Model/
COPY src/XGenMM.Engine/XGenMM.Engine.csproj src/XGenMM.Engine/
COPY src/XGenMM.Cluster.Abstractions/XGenMM.Cluster.Abstractions.csproj src/XGenMM.Cluster.Abstractions/
COPY src/XGenMM.ServiceDefaults/XGenMM.ServiceDefaults.csproj src/XGenMM.ServiceDefaults/
COPY src/XGenMM.Cluster/XGenMM.Cluster.csproj src/XGenMM.Cluster/
COPY src/XGenMM.Silo/XGenMM.Silo.csproj src/XGenMM.Silo/
RUN dotnet restore src/XGenMM.Silo/XGenMM.Silo.csproj -p:TorchBackend=cuda
COPY src/ src/
# models/ holds only small committed files (the tokenizer, the xgenmm-nano demo model), never a served checkpoint.
COPY models/ models/
RUN dotnet publish src/XGenMM.Silo/XGenMM.Silo.csproj -c Release -p:TorchBackend=cuda --no-restore -o /app

FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION}-noble AS dotnet

FROM ${CUDA_IMAGE} AS final
# What the .NET runtime needs on Ubuntu (globalization is invariant: no ICU; SkiaSharp's native build needs only libc),
# and curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3t64 tzdata zlib1g curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 1654 app && useradd --uid 1654 --gid 1654 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin app
COPY --from=dotnet /usr/share/dotnet /usr/share/dotnet
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet
ENV DOTNET_ROOT=/usr/share/dotnet \
    HOME=/tmp \
    Silo__HttpPort=8080 \
    Silo__HttpAddress=0.0.0.0 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
COPY --from=build --chown=root:root /app ./
USER 1654:1654
# HTTP (/healthz, /readyz, /metrics), Orleans silo-to-silo, Orleans client gateway.
EXPOSE 8080 11111 30000
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:${Silo__HttpPort:-8080}/healthz >/dev/null || exit 1"]
ENTRYPOINT ["dotnet", "XGenMM.Silo.dll"]

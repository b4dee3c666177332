# syntax=docker/dockerfile:1
# The gateway image: src/XGenMM.Gateway (OpenAI-compatible API, SignalR hub, chat page) on the ASP.NET Core runtime.
# It needs no GPU and carries no libtorch: it is an Orleans client of the silos (Cluster mode). It reads the model directory only for
# the tokenizer and configuration (Model__Path; mounted or downloaded, never in the image). Runs as uid 1654 and works
# with a read-only root filesystem (/tmp writable).
#   docker build -f deploy/docker/gateway.Dockerfile -t xgenmm/gateway:0.1.0 .
ARG DOTNET_VERSION=10.0

FROM mcr.microsoft.com/dotnet/sdk:${DOTNET_VERSION}-noble AS build
# The build fetches the SignalR browser client with npm (ClientApp/package-lock.json).
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY global.json Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY build/ build/
# The gateway is torch-free: its restore graph has no TorchSharp or libtorch (tests/XGenMM.Architecture.Tests).
COPY src/XGenMM.Model.Hub/XGenMM.Model.Hub.csproj src/XGenMM.Model.Hub/
COPY src/XGenMM.Model.Core/XGenMM.Model.Core.csproj src/XGenMM.Model.Core/
COPY src/XGenMM.Cluster.Abstractions/XGenMM.Cluster.Abstractions.csproj src/XGenMM.Cluster.Abstractions/
COPY src/XGenMM.Cluster.Client/XGenMM.Cluster.Client.csproj src/XGenMM.Cluster.Client/
COPY src/XGenMM.ServiceDefaults/XGenMM.ServiceDefaults.csproj src/XGenMM.ServiceDefaults/
COPY src/XGenMM.Gateway.Contracts/XGenMM.Gateway.Contracts.csproj src/XGenMM.Gateway.Contracts/
COPY src/XGenMM.Gateway/XGenMM.Gateway.csproj src/XGenMM.Gateway/
RUN dotnet restore src/XGenMM.Gateway/XGenMM.Gateway.csproj
COPY src/ src/
# models/ holds only small committed files (the tokenizer, the xgenmm-nano demo model), never a served checkpoint.
COPY models/ models/
RUN dotnet publish src/XGenMM.Gateway/XGenMM.Gateway.csproj -c Release --no-restore -o /app

FROM mcr.microsoft.com/dotnet/aspnet:${DOTNET_VERSION}-noble AS final
# curl for the health check (SkiaSharp's native build needs only libc).
RUN apt-get update \
 && apt-get install -y --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*
ENV HOME=/tmp \
    ASPNETCORE_HTTP_PORTS=8080 \
    Gateway__Mode=Cluster
WORKDIR /app
COPY --from=build --chown=root:root /app ./
# The aspnet image's non-root user (uid 1654).
USER 1654:1654
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/bin/sh", "-c", "curl -fsS http://127.0.0.1:${ASPNETCORE_HTTP_PORTS:-8080}/healthz >/dev/null || exit 1"]
ENTRYPOINT ["dotnet", "XGenMM.Gateway.dll"]

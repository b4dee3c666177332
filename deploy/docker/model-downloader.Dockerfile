# The model downloader of the Helm chart (model.source huggingface): Python with huggingface_hub installed here, at
# build time, so that the init container installs nothing at pod start and reaches only the model host. The chart
# mounts its script (helm/xgenmm/files/download_model.py) from a ConfigMap; the Hugging Face token comes from a Secret.
#   docker build -f deploy/docker/model-downloader.Dockerfile -t <registry>/xgenmm/model-downloader:<tag> deploy/docker
FROM docker.io/library/python:3.12-slim
RUN pip install --no-cache-dir --disable-pip-version-check "huggingface_hub>=0.30,<3"
ENV HF_HUB_DISABLE_TELEMETRY=1
USER 1654:1654
ENTRYPOINT ["python3"]

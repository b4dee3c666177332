"""Downloads a Hugging Face checkpoint into the model cache volume, once.

Run by the model-download init container of the silos (profile "full": every file) and of the gateway (profile
"meta": only the configuration and tokenizer files, ALLOW_PATTERNS). A marker file per profile records a finished
download, so restarts and later pods skip it; a full download also satisfies "meta". An exclusive lock on the cache
directory keeps pods that share a cache volume from downloading the same files at once.
"""
import fcntl
import os
import pathlib
import sys

repo = os.environ["HF_REPO"]
revision = os.environ.get("HF_REVISION") or "main"
target = pathlib.Path(os.environ["MODEL_DIR"])
profile = os.environ.get("DOWNLOAD_PROFILE", "full")
patterns = [p for p in os.environ.get("ALLOW_PATTERNS", "").split(",") if p]

full_marker = target / ".xgenmm-complete-full"
own_marker = target / f".xgenmm-complete-{profile}"


def finished() -> bool:
    return full_marker.exists() or own_marker.exists()


if finished():
    print(f"{repo}@{revision}: already in {target}")
    sys.exit(0)

target.mkdir(parents=True, exist_ok=True)
with open(target.parent / f".{target.name}.lock", "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if finished():
        print(f"{repo}@{revision}: downloaded by another pod")
        sys.exit(0)
    try:
        import huggingface_hub
    except ImportError:
        # Nothing is installed at pod start (the pod may reach no package index): the image must bring it.
        sys.exit("huggingface_hub is not installed in this image: use the chart's model-downloader image "
                 "(deploy/docker/model-downloader.Dockerfile) or an image of your own that has it (model.huggingface.image).")
    print(f"{repo}@{revision}: downloading ({profile}) into {target}", flush=True)
    huggingface_hub.snapshot_download(
        repo_id=repo,
        revision=revision,
        local_dir=str(target),
        token=os.environ.get("HF_TOKEN") or None,
        allow_patterns=patterns or None,
    )
    own_marker.write_text(f"{repo}@{revision}\n")
    print(f"{repo}@{revision}: done")

"""Entry point: `python -m services.clip_ingest` or `privacam-clip-ingest`."""

from services.clip_ingest import NAME
from services.clip_ingest.app import build
from services.clip_ingest.settings import ClipIngestSettings
from services.common.runtime import main as run_service


def main() -> None:
    run_service(NAME, ClipIngestSettings, build)


if __name__ == "__main__":
    main()

"""Entry point: `python -m services.privacy_watch` or `privacam-privacy-watch`."""

from services.common.runtime import main as run_service
from services.privacy_watch import NAME
from services.privacy_watch.app import build
from services.privacy_watch.settings import PrivacyWatchSettings


def main() -> None:
    run_service(NAME, PrivacyWatchSettings, build)


if __name__ == "__main__":
    main()

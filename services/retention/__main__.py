"""Entry point: `python -m services.retention` or `privacam-retention`."""

from services.common.runtime import main as run_service
from services.retention import NAME
from services.retention.app import build
from services.retention.settings import RetentionSettings


def main() -> None:
    run_service(NAME, RetentionSettings, build)


if __name__ == "__main__":
    main()

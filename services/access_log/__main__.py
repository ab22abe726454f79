"""Entry point: `python -m services.access_log` or `privacam-access-log`."""

from services.access_log import NAME
from services.access_log.app import build
from services.access_log.settings import AccessLogSettings
from services.common.runtime import main as run_service


def main() -> None:
    run_service(NAME, AccessLogSettings, build)


if __name__ == "__main__":
    main()

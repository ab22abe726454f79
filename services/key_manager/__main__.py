"""Entry point: `python -m services.key_manager` or `privacam-key-manager`."""

from services.common.runtime import main as run_service
from services.key_manager import NAME
from services.key_manager.app import build
from services.key_manager.settings import KeyManagerSettings


def main() -> None:
    run_service(NAME, KeyManagerSettings, build)


if __name__ == "__main__":
    main()

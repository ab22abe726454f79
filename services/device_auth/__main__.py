"""Entry point: `python -m services.device_auth` or `privacam-device-auth`."""

from services.common.runtime import main as run_service
from services.device_auth import NAME
from services.device_auth.app import build
from services.device_auth.settings import DeviceAuthSettings


def main() -> None:
    run_service(NAME, DeviceAuthSettings, build)


if __name__ == "__main__":
    main()

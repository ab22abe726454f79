"""Entry point: `python -m services.relay_broker` or `privacam-relay-broker`."""

from services.common.runtime import main as run_service
from services.relay_broker import NAME
from services.relay_broker.app import build
from services.relay_broker.settings import RelayBrokerSettings


def main() -> None:
    run_service(NAME, RelayBrokerSettings, build)


if __name__ == "__main__":
    main()

"""Who may call each RPC of RelayBrokerService: the authorization hook reads this table.

Resource checks (whose camera, which grant) happen in the domain; this table
only says which certificates reach each method at all: kinds of caller, and other
services by name, exactly those whose code calls the method (a unit test,
tests/unit/common/test_least_privilege.py, derives that from the code).
"""

from privacam.relay.v1 import relay_broker_service_pb2 as pb
from services.common.auth import APP, CAMERA
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["RelayBrokerService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        "CameraControl": CAMERA,
        "StartLiveView": APP,
        "Signal": CAMERA | APP,
        "EndLiveView": CAMERA | APP,
        "RenewTurnCredentials": CAMERA | APP,
        "GetCameraPresence": APP,
        "StreamNotices": APP,
        "ListWatchNotices": APP,
        "StartTalkBack": APP,
        "EndTalkBack": APP,
    },
)

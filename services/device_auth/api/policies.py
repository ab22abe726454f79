"""Who may call each RPC of DeviceAuthService: the authorization hook reads this table.

Resource checks (whose camera, which grant) happen in the domain; this table
only says which certificates reach each method at all: kinds of caller, and other
services by name, exactly those whose code calls the method (a unit test,
tests/unit/common/test_least_privilege.py, derives that from the code).
"""

from privacam.identity.v1 import device_auth_service_pb2 as pb
from services.common.auth import APP, CAMERA, ENROLLMENT_PORT_ONLY, services
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["DeviceAuthService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        # Served only on the server-authenticated enrollment port (no client
        # certificate yet); the mTLS API port refuses them.
        "RegisterAccount": ENROLLMENT_PORT_ONLY,
        "SignIn": ENROLLMENT_PORT_ONLY,
        "EnrollCamera": ENROLLMENT_PORT_ONLY,
        "GetAccount": APP,
        "UpdateAccount": APP,
        "ChangePassword": APP,
        "ListAppInstalls": APP,
        "RevokeAppInstall": APP,
        "CreateClaimToken": APP,
        "RenewCertificate": CAMERA | APP,
        "ListCameras": APP,
        "GetCamera": APP,
        "RevokeCamera": APP,
        "GetCameraSettings": APP | services("clip-ingest", "relay-broker"),
        "UpdateCameraSettings": APP,
        "SetPrivacyMode": APP,
        "SetPin": APP,
        "ChangePin": APP,
        "ClearPin": APP,
        "CreateGrant": APP,
        "ListGrants": APP,
        "RevokeGrant": APP,
        "VerifyPassword": services("retention"),
        "PurgeTenant": services("retention"),
        "AuthorizeCameraAccess": services("clip-ingest", "relay-broker", "retention"),
        "ExportTenant": services("retention"),
    },
)

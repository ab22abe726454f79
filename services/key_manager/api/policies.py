"""Who may call each RPC of KeyManagerService: the authorization hook reads this table.

Resource checks (whose camera, which grant) happen in the domain; this table
only says which certificates reach each method at all: kinds of caller, and other
services by name, exactly those whose code calls the method (a unit test,
tests/unit/common/test_least_privilege.py, derives that from the code).
"""

from privacam.keys.v1 import key_manager_service_pb2 as pb
from services.common.auth import OPERATOR, services
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["KeyManagerService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        # Cameras and apps never reach keys: only the services that use them do.
        "GenerateDataKey": services("clip-ingest", "retention"),
        "Unwrap": services("clip-ingest", "retention"),
        # No service rotates on demand (periods roll over on their own): an operator's lever.
        "Rotate": OPERATOR,
        "DestroyPeriod": services("retention"),
        "DestroyTenant": services("retention"),
        "ListKeyVersions": services("clip-ingest", "retention"),
        # No service calls these: closed until they are removed from the API.
    },
)

"""Who may call each RPC of KeyManagerService: the authorization hook reads this table.

Resource checks (whose camera, which grant) happen in the domain; this table
only says which kinds of certificate reach each method at all.
"""

from privacam.keys.v1 import key_manager_service_pb2 as pb
from services.common.auth import SERVICE
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["KeyManagerService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        # Cameras and apps never reach keys: only other services do.
        "GenerateDataKey": SERVICE,
        "Unwrap": SERVICE,
        "Rewrap": SERVICE,
        "Rotate": SERVICE,
        "DestroyPeriod": SERVICE,
        "DestroyTenant": SERVICE,
        "ListKeyVersions": SERVICE,
        "BatchGenerateDataKeys": SERVICE,
        "BatchUnwrap": SERVICE,
        "BatchRewrap": SERVICE,
    },
)

"""Who may call each RPC of RetentionService: the authorization hook reads this table.

Resource checks (whose camera, which grant) happen in the domain; this table
only says which certificates reach each method at all: kinds of caller, and other
services by name, exactly those whose code calls the method (a unit test,
tests/unit/common/test_least_privilege.py, derives that from the code).
"""

from privacam.retention.v1 import retention_service_pb2 as pb
from services.common.auth import APP
from services.common.runtime import method_policies

SERVICE_DESCRIPTOR = pb.DESCRIPTOR.services_by_name["RetentionService"]

POLICIES = method_policies(
    SERVICE_DESCRIPTOR,
    {
        "GetRetentionSettings": APP,
        "ListShredRecords": APP,
        "WithdrawConsent": APP,
        "RequestExport": APP,
        "GetExport": APP,
        "ListExports": APP,
        "DownloadExport": APP,
        "DeleteExport": APP,
        "CancelAccount": APP,
    },
)
